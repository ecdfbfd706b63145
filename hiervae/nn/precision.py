"""Mixed precision for the networks only: bf16 matmuls, float32 everywhere else.

``train.precision: bf16`` should buy the bf16 matmul throughput (tensor cores on a GPU,
AVX512-BF16/AMX on recent CPUs) without making the *objective* bf16.  Plain
``torch.autocast`` would: a Linear's bf16 output flows into the softplus/elu of the
variance, the Normal and Bernoulli log densities and the KL, which then run in bf16
(8 significant bits), and a sum of 784 pixel log-likelihoods of about -80 nats would
be rounded to about +-0.25 nats.

So :func:`network_precision` enters ``torch.autocast(dtype=bfloat16)`` *and* casts the
output of every network of :mod:`hiervae.nn` (:class:`~hiervae.nn.mlp.MLP`,
:class:`~hiervae.nn.made.ConditionalMADE`) back to float32 with a forward hook that
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

PRECISIONS = ("fp32", "bf16")


def _network_types() -> tuple[type, ...]:
    from hiervae.nn.made import ConditionalMADE
    from hiervae.nn.mlp import MLP

    return (MLP, ConditionalMADE)


def _to_float32(module: nn.Module, inputs, output):
    if isinstance(output, torch.Tensor) and output.dtype == torch.bfloat16:
        return output.float()
    return None


@contextlib.contextmanager
def network_precision(module: nn.Module, precision: str, device_type: str,
                      networks: tuple[type, ...] | None = None) -> Iterator[None]:
    """Run ``module``'s networks in ``precision`` (``fp32`` or ``bf16``) inside the block.

    ``networks``: the module types whose outputs go back to float32 (default: hiervae's).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        yield
        return
    types = networks or _network_types()
    hooks = [m.register_forward_hook(_to_float32) for m in module.modules() if isinstance(m, types)]
    try:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            yield
    finally:
        for hook in hooks:
            hook.remove()
