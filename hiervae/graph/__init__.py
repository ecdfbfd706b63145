"""Graph IR and the analyses on it (functional d-separation, faithfulness check)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from hiervae.graph.build import build_graph
from hiervae.graph.ir import GuideFactor, ModelGraph, ModelNode
from hiervae.language import load_spec


def load_graph(path: str | Path, overrides: Iterable[str] = ()) -> ModelGraph:
    """Spec file -> validated :class:`ModelGraph`."""
    return build_graph(load_spec(path, overrides))


__all__ = ["ModelGraph", "ModelNode", "GuideFactor", "build_graph", "load_graph"]
