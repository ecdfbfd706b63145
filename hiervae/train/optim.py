"""One ``torch.optim.Adam`` (or ``AdamW``) over every parameter of a program (the direct engine).

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


OPTIMISERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}  # clipped_adam: the pyro engine


def make_optimizer(params: Iterable[torch.nn.Parameter], spec: S.AdamSpec, *, fused: bool | None = None) -> torch.optim.Adam:
    """Adam (weight decay as L2, coupled, as in the paper) or AdamW (decoupled) with
    ``spec``'s lr, betas, eps and weight decay.

    ``fused=None`` tries the fused implementation and falls back quietly.
    """
    params = [p for p in params if p.requires_grad]
    cls = OPTIMISERS[spec.name]
    kwargs = dict(lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps, weight_decay=spec.weight_decay)
    if fused is not False:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError, ValueError):
            if fused:
                raise
    return cls(params, **kwargs)


def clip_each(params: list[torch.nn.Parameter], max_norm: float) -> None:
    """Scale each parameter's gradient to norm at most ``max_norm``, exactly as Pyro's
    ``clip_args={"clip_norm": max_norm}`` (``clip_grad_norm_`` per parameter), no host sync."""
    grads = [p.grad for p in params if p.grad is not None]
    if grads:
        norms = torch._foreach_norm(grads)
        torch._foreach_mul_(grads, [torch.clamp(max_norm / (n + 1e-6), max=1.0) for n in norms])


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
