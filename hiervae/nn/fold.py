"""Inference-time folding of eval-mode batch normalisation into the following Linear.

Every MLP of the paper's networks puts ``BatchNorm1d`` at the *input* of each linear
layer (:class:`hiervae.nn.networks.mlp.MLP`).  In eval mode that BatchNorm is a fixed affine map
``x -> x * s + t`` with ``s = gamma / sqrt(running_var + eps)`` and
``t = beta - running_mean * s``, so ``Linear(BN(x)) = x @ (W * s)^T + (b + W t)``: one
Linear with the same matmul cost and no BatchNorm pass.  For IW evaluation (10^5
particle-points per 100 test images and 1000 samples) the BatchNorm passes are a
memory-bound elementwise sweep over every hidden activation, so removing them is a
measurable share of the time (docs/performance.md).

:func:`folded_batch_norm` folds *within a context*: it swaps each (BatchNorm1d, Linear)
pair of every ``nn.Sequential`` for (Identity, folded Linear) and puts the original
modules back on exit.  The original parameters and buffers are never written, so
leaving the context restores the module bit for bit, a checkpoint saved afterwards is
unchanged, and no copy of the whole program is made.  The fold is computed in float64
and rounded once to the weights' dtype.

Only valid where the BatchNorm uses its running statistics: the module must be in eval
mode (a ValueError otherwise), and a BatchNorm without running statistics
(``track_running_stats=False``, batch statistics even in eval) is left alone, as is a
BatchNorm not directly followed by a Linear.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


def foldable(bn: nn.Module, nxt: nn.Module) -> bool:
    """Whether ``nxt(bn(x))`` can be one Linear: an eval-statistics BatchNorm1d then a Linear."""
    return (isinstance(bn, nn.BatchNorm1d) and isinstance(nxt, nn.Linear)
            and bn.running_mean is not None and bn.running_var is not None
            and bn.num_features == nxt.in_features)


@torch.no_grad()
def fold_linear(bn: nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """A new Linear equal to ``linear(bn(x))`` for ``bn`` in eval mode (no gradients)."""
    if not foldable(bn, linear):
        raise ValueError("fold_linear needs a BatchNorm1d with running statistics followed by a matching Linear")
    f64 = torch.float64
    var, mean = bn.running_var.to(f64), bn.running_mean.to(f64)
    gamma = bn.weight.to(f64) if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.to(f64) if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    shift = beta - mean * scale
    w = linear.weight.to(f64)
    b = linear.bias.to(f64) if linear.bias is not None else torch.zeros(w.shape[0], dtype=f64, device=w.device)
    # skip_init: no random initialisation, which would advance the global RNG and so change
    # the particles an evaluation draws after folding (a seeded run must not depend on folding)
    out = nn.utils.skip_init(nn.Linear, linear.in_features, linear.out_features, device=w.device, dtype=linear.weight.dtype)
    out.weight.copy_(w * scale)
    out.bias.copy_(b + w @ shift)
    out.requires_grad_(False)
    return out


@contextlib.contextmanager
def folded_batch_norm(module: nn.Module) -> Iterator[int]:
    """Inside the block, every eval-mode (BatchNorm1d, Linear) pair of ``module`` is one Linear.

    Yields the number of pairs folded.  ``module`` must be in eval mode and stay in it
    (switching to training inside the block would silently keep the folded, eval-only
    layers).  Re-entering on an already folded module folds nothing more.
    """
    if module.training:
        raise ValueError("folded_batch_norm needs the module in eval mode (BatchNorm must use its running statistics)")
    swapped: list[tuple[nn.Sequential, str, nn.Module]] = []  # (container, key, original module)
    try:
        for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
            keys = list(seq._modules)
            for a, b in zip(keys, keys[1:]):
                bn, linear = seq._modules[a], seq._modules[b]
                if foldable(bn, linear):
                    folded = fold_linear(bn, linear)
                    swapped += [(seq, a, bn), (seq, b, linear)]
                    seq._modules[a], seq._modules[b] = nn.Identity(), folded
        yield len(swapped) // 2
    finally:
        for seq, key, original in reversed(swapped):
            seq._modules[key] = original
