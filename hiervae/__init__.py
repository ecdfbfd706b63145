"""hiervae: hierarchical latent-variable models declared as YAML graphs.

Pipeline, one package per stage::

    spec.yaml --hiervae.spec--> Spec --hiervae.graph--> ModelGraph
    ModelGraph --> hiervae.graph.faithfulness (check) / hiervae.render (graphviz)
    ModelGraph --> hiervae.compile (Pyro model/guide) --> hiervae.train / hiervae.evaluate
"""

__version__ = "0.1.0"
