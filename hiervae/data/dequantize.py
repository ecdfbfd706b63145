"""Uniform dequantisation of 8-bit pixels: ``k in {0..255} -> v = (k + u) / 256``.

A continuous density (a flow) must not be fitted to values on a grid: its likelihood
would grow without bound by putting spikes on the grid points.  Adding ``u ~ U[0, 1)``
turns each pixel into a point of its bin ``[k/256, (k+1)/256)``; the density of ``v``
on [0, 1]^D then lower-bounds the probability of the discrete pixels,
``log P(k) >= E_u[log p(v)] - D log 256`` (Theis et al. 2016), which is what bits/dim
report (:func:`bits_per_dim`).

Where the noise comes from (``data.dequantize: uniform``):

* training: fresh noise for every batch, drawn by :class:`hiervae.data.Batches` from a
  generator seeded from (seed, epoch, global batch), like dynamic binarisation, so it
  does not depend on the rank or on what was iterated before;
* validation and test: dequantised ONCE at load time with fixed seeds
  (:func:`dequantize_fixed`, ``EVAL_SEEDS``), so every run and model is scored on the
  same values.

This module is the single implementation of dequantisation and of bits/dim.
"""

from __future__ import annotations

import math

import numpy as np
import torch

DEQUANTIZE_MODES = ("none", "uniform")
LOG_256 = math.log(256.0)
_ROWS_PER_CHUNK = 8192


def dequantize(
    x: torch.Tensor, noise: float | torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pixels -> ``v = (k + u) / 256`` in [0, 1), float32 (or ``x``'s float dtype).

    ``x`` is either integer pixels ``k`` (``torch.uint8``, or any integer dtype) or
    floats ``k / 255`` as the data loaders return them (rounded back to ``k``; floats
    must lie on that grid).  ``noise=None`` draws ``u ~ U[0, 1)`` (with ``generator``
    if given); a number or tensor is used as ``u`` itself, e.g. ``0.5`` for the
    deterministic bin centres.

    ``v`` is clipped to the largest float below 1: ``(255 + u) / 256`` rounds to
    exactly 1.0 in float32 for ``u > 1 - 2^-17`` or so, and ``logit(1)`` is infinite.
    """
    if x.dtype.is_floating_point:
        dtype = x.dtype
        pixels = torch.round(x * 255)
    else:
        dtype = torch.get_default_dtype()
        pixels = x.to(dtype)
    if noise is None:
        u = torch.rand(pixels.shape, generator=generator, dtype=dtype, device=pixels.device)
    else:
        u = torch.as_tensor(noise, dtype=dtype, device=pixels.device)
    return ((pixels + u) / 256).clamp(max=1 - torch.finfo(dtype).eps / 2)


def dequantize_fixed(x: np.ndarray, seed: int) -> np.ndarray:
    """One reproducible dequantisation of ``x`` (floats ``k / 255``) as float32.

    ``u`` comes from a legacy ``numpy.random.RandomState(seed)`` stream (frozen across
    numpy versions), row-major, as :func:`hiervae.data.binarize_fixed` draws its noise.
    """
    rng = np.random.RandomState(seed)
    out = np.empty(x.shape, np.float32)
    for i in range(0, len(x), _ROWS_PER_CHUNK):
        block = x[i : i + _ROWS_PER_CHUNK]
        u = rng.random_sample(block.shape).astype(np.float32)
        out[i : i + len(block)] = dequantize(torch.from_numpy(np.asarray(block, np.float32)), torch.from_numpy(u)).numpy()
    return out


def bits_per_dim(log_prob_nats: torch.Tensor | float, D: int) -> torch.Tensor | float:
    """Bits per dimension of 8-bit data from ``log p(v)``, the density on [0, 1]^D (nats).

    ``-(log p(v) - D log 256) / (D log 2)``: the ``- D log 256`` turns the density on
    [0, 1]^D into the density of the 256-level pixel values on [0, 256)^D.
    """
    return -(log_prob_nats - D * LOG_256) / (D * math.log(2.0))
