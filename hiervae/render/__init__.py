"""Graphviz pictures of a model: generative model p and inference model q side by side.

``render_dot(graph, report=None)`` builds the picture (a ``graphviz.Digraph``; ``.source``
is the DOT text), ``write(graph, out_dir, formats, report, dot_only)`` writes ``<name>.gv``
and the rendered files.  Conventions and the deep-hierarchy collapse rule: ``dot.py``.
"""

from hiervae.render.dot import COLLAPSE_ABOVE, KEEP, layers, plate_size, pretty, render_dot, write

__all__ = ["COLLAPSE_ABOVE", "KEEP", "layers", "plate_size", "pretty", "render_dot", "write"]
