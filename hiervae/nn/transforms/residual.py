"""The ``residual`` transform: a deterministic, NOT bijective node ``h = h_prev + r(given)``
(paper Fig. 5, section 4.2: the SeRe-MAF's context chain ``gamma(l)``)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.distributions import Transform, constraints

from hiervae.language.net import Net
from hiervae.nn.networks.params import ParamNet
from hiervae.nn.registry import TRANSFORMS, TransformModule


class ResidualUpdate(Transform):
    """``h_prev -> h_prev + r``, with ``r = r(context)`` already computed; ``None -> r``.

    Deterministic and NOT bijective in the sense the graph uses (``h`` also depends on
    the context through ``r``, and it has no density-preserving inverse): ``inv`` and
    ``log_abs_det_jacobian`` are not available.  Subclasses ``Transform`` only so that
    it looks like the other transforms to the compiler (``t(h_prev)``, ``t.bijective``).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = False

    def __init__(self, residual: torch.Tensor):
        super().__init__()
        self.residual = residual

    def __call__(self, h_prev: torch.Tensor | None = None) -> torch.Tensor:
        return self._call(h_prev)

    def _call(self, h_prev: torch.Tensor | None) -> torch.Tensor:
        return self.residual if h_prev is None else h_prev + self.residual

    def log_abs_det_jacobian(self, x, y):
        raise NotImplementedError("a residual update is not a bijection of its input")


@TRANSFORMS.register("residual")
class Residual(TransformModule, nn.Module):
    """Deterministic node ``h = h_prev + r(context)`` (paper Fig. 5, section 4.2).

    ``gamma(l) = gamma(l-1) + r(gamma(l-1), z(l))``: ``context`` is the concatenation of
    all ``given`` nodes (``gamma(l-1)`` included), ``r`` an MLP of it with a linear
    output of ``dim`` units (or a learned constant without context), and
    ``condition(context)`` returns a :class:`ResidualUpdate` to call on ``h_prev``
    (``None`` at the first layer, where ``h = r(context)``).  Table 9: 2 x 512 relu
    units, dropout 0.5 in the paper's residual blocks.
    """

    bijective = False
    needs_dim = True
    net_keys = frozenset({"mlp", "activation", "out_activation", "batch_norm", "dropout"})
    net_defaults = Net(layers=(512, 512), activation="relu")
    doc = "deterministic residual refinement h' = h + r(h, given)"

    def __init__(self, dim: int, context_features: int, net: Net | None = None):
        super().__init__()
        self.dim, self.context_features = dim, context_features
        self.net = ParamNet(context_features, torch.zeros(dim), self.network(net))

    def condition(self, context: torch.Tensor | None = None) -> ResidualUpdate:
        return ResidualUpdate(self.net(context))

    @classmethod
    def applied_to(cls, name: str, nodes: Mapping[str, Any]) -> str | None:
        """``h_prev``: the conditioner of the same dimension that is itself a ``residual``
        node (``gamma(l-1)`` for ``gamma(l)``), or ``None`` (``h = r(given)``) when there is
        none, e.g. at the first layer where ``gamma(0)`` is a dropped boundary reference.
        ``h_prev`` stays in the context too (``r`` reads ``gamma(l-1)`` and ``z(l)``).
        Inferred from the graph rather than declared, so the spec says each fact once."""
        node = nodes[name]
        chain = [p for p in node.conditioners
                 if nodes[p].kind == "transform" and nodes[p].family == node.family and nodes[p].dim == node.dim]
        if len(chain) > 1:
            raise ValueError(f"{name!r} ({node.family}) has several conditioners it could refine ({', '.join(chain)}); "
                             f"give it one {node.family} node of dim {node.dim} in given")
        return chain[0] if chain else None
