"""Mixed precision for the networks only: bf16 matmuls, float32 everywhere else.

``train.precision: bf16`` should buy the bf16 matmul throughput (tensor cores on a GPU,
AVX512-BF16/AMX on recent CPUs) without making the *objective* bf16.  Plain
``torch.autocast`` would: a Linear's bf16 output flows into the softplus/elu of the
variance, the Normal and Bernoulli log densities and the KL, which then run in bf16
(8 significant bits), and a sum of 784 pixel log-likelihoods of about -80 nats would
be rounded to about +-0.25 nats.

So :func:`network_precision` enters ``torch.autocast(dtype=bfloat16)`` *and* casts the
output of every network module (:class:`~hiervae.nn.networks.base.Network`: every network
kind's modules and the MADE; Pyro's autoregressive network of the IAF family, declared with
:func:`~hiervae.nn.networks.base.float32_output`) back to float32 with a forward hook that
exists only inside the block.  The networks' inner layers and activations run in bf16;
distribution parameters, log densities, KL terms and their sums stay float32.
Parameters stay float32 (autocast casts per op), so the optimiser, checkpoints and
evaluation are unchanged.  ``fp32`` is a no-op.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from hiervae.nn.networks.base import network_types

PRECISIONS = ("fp32", "bf16")


def _to_float32(module: nn.Module, inputs, output):
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype == torch.bfloat16 else None
    if isinstance(output, tuple) and any(isinstance(o, torch.Tensor) and o.dtype == torch.bfloat16 for o in output):
        return tuple(o.float() if isinstance(o, torch.Tensor) and o.dtype == torch.bfloat16 else o for o in output)
    return None


@contextlib.contextmanager
def network_precision(module: nn.Module, precision: str, device_type: str,
                      networks: tuple[type, ...] | None = None) -> Iterator[None]:
    """Run ``module``'s networks in ``precision`` (``fp32`` or ``bf16``) inside the block.

    ``networks``: the module types whose outputs go back to float32 (default: every network).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        yield
        return
    types = networks or network_types()
    hooks = [m.register_forward_hook(_to_float32) for m in module.modules() if isinstance(m, types)]
    try:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            yield
    finally:
        for hook in hooks:
            hook.remove()
