"""hiervae: hierarchical latent-variable models declared as YAML graphs.

Pipeline, one package per stage::

    spec.yaml --hiervae.language--> Spec --hiervae.graph--> ModelGraph
    ModelGraph --> hiervae.graph.faithfulness (check) / hiervae.render (graphviz)
    ModelGraph --> hiervae.program (Pyro model/guide) --> hiervae.train / hiervae.evaluation
"""

__version__ = "0.1.0"
