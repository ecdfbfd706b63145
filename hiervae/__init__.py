"""hiervae: hierarchical latent-variable models declared as YAML graphs.

Pipeline, one package per stage::

    spec.yaml --hiervae.language--> Spec --hiervae.graph--> ModelGraph
    ModelGraph --> hiervae.graph.faithfulness (check) / hiervae.render (graphviz)
    ModelGraph --> hiervae.program (Pyro model/guide) --> hiervae.train / hiervae.evaluation

The Python API (docs/api.md): ``hiervae.check``, ``hiervae.compile``, ``hiervae.fit``,
``hiervae.load_run`` and :class:`hiervae.api.Model`; imported on first use, so that
``import hiervae`` (and the CLI's start) does not pay for torch and Pyro.
"""

__version__ = "0.1.0"

_API = {"check": "hiervae.api", "compile": "hiervae.api", "load_run": "hiervae.api", "Model": "hiervae.api",
        "fit": "hiervae.train"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'hiervae' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
