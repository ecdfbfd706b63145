"""One ``torch.optim.Adam`` over every parameter of a program.

Not ``pyro.optim``: it makes one Adam per parameter plus param-store bookkeeping
(0.72x the speed, docs/performance.md).  ``fused=True`` where this torch supports it
on the parameters' device (CPU fused Adam exists since torch 2.4); otherwise the
default implementation.  The fused kernel also takes a ``found_inf`` flag, so a step
with non-finite gradients can be skipped on the device without a host sync
(:func:`step_unless`).
"""

from __future__ import annotations

import warnings
from typing import Iterable

import torch

from hiervae.language import schema as S


def make_optimizer(params: Iterable[torch.nn.Parameter], spec: S.AdamSpec, *, fused: bool | None = None) -> torch.optim.Adam:
    """Adam with ``spec``'s lr, betas, eps and weight decay (L2, coupled as in the paper).

    ``fused=None`` tries the fused implementation and falls back quietly.
    """
    params = [p for p in params if p.requires_grad]
    kwargs = dict(lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps, weight_decay=spec.weight_decay)
    if fused is not False:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.optim.Adam(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            if fused:
                raise
    return torch.optim.Adam(params, **kwargs)


def is_fused(optimizer: torch.optim.Optimizer) -> bool:
    return bool(optimizer.param_groups and optimizer.param_groups[0].get("fused"))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def grads_finite(params: list[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    """0-d bool tensor on the device: the loss and every gradient are finite (no sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    ok = torch.isfinite(loss.detach())
    if grads:
        norms = torch._foreach_norm(grads)  # inf/nan in a gradient makes its norm inf/nan
        ok = ok & torch.isfinite(torch.stack(norms)).all()
    return ok


def step_unless(optimizer: torch.optim.Optimizer, ok: torch.Tensor) -> None:
    """``optimizer.step()`` if ``ok``, else leave parameters and optimiser state unchanged.

    Fused Adam skips on the device (its ``found_inf`` argument, as used by GradScaler);
    other implementations need one host sync.
    """
    if is_fused(optimizer):
        optimizer.found_inf = (~ok).to(torch.float32)
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
    elif bool(ok):
        optimizer.step()
