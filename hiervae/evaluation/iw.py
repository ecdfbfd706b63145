"""Importance-weighted log-likelihood (Burda et al. 2016), chunked over particles.

    log p(x) ~= logsumexp_k [log p(x, eps_k) - log q(eps_k | x)] - log K,   eps_k ~ q(. | x)

per data point.  Particles are a leading dimension of the direct evaluation of the
program (:meth:`Program.walk` with ``particles``): every latent is drawn at batch
shape ``(n, B)``, the networks see ``(n, B, F)`` inputs while ``x`` stays ``(B, D)``,
so the evidence encoders of ``x`` run once per chunk on ``(B, F)``.
Chunks of ``chunk`` particles are folded into a running logsumexp, so memory is bounded
by one chunk whatever ``K`` is.

The program runs in eval mode (BatchNorm would otherwise couple the examples of a
batch and the particles of a chunk) and without autograd; its training flag is restored
afterwards.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Iterator

import pyro
import torch

from hiervae.nn.fold import folded_batch_norm
from hiervae.nn.precision import network_precision
from hiervae.program.iwae import iw_terms
from hiervae.program.program import Program


@contextlib.contextmanager
def inference_mode(program: Program, fold: bool = True) -> Iterator[Program]:
    """``program`` in eval mode under ``torch.no_grad``; the training flag is restored.

    ``fold``: eval-mode BatchNorm layers are folded into the Linear that follows them
    for the duration (:func:`hiervae.nn.fold.folded_batch_norm`; same function to
    float round-off, no separate normalisation pass; the parameters are untouched).
    Pyro's argument validation is off, as in ``fit``: the distributions' parameters
    come from the networks, and each check is a host sync (``bool`` of a device
    tensor), hundreds per chunk, which would serialise a GPU.
    """
    was_training = program.training
    program.eval()
    try:
        with torch.no_grad(), pyro.validation_enabled(False), \
                (folded_batch_norm(program) if fold else contextlib.nullcontext()):
            yield program
    finally:
        program.train(was_training)


def program_device(program: Program) -> torch.device:
    """The device of the program's first parameter or buffer (CPU if it has none)."""
    for t in (*program.parameters(), *program.buffers()):
        return t.device
    return torch.device("cpu")


def log_weights(program: Program, x, particles: int) -> torch.Tensor:
    """``log p(x, eps_k) - log q(eps_k | x)`` for ``particles`` guide samples: ``(particles, B)``.

    Call under :func:`inference_mode` (or take care of eval mode / no_grad yourself).
    The model's log densities over its latent and observed sites minus the guide's over
    its latent sites (:func:`hiervae.program.iwae.iw_terms`, from :meth:`Program.walk`: the
    same numbers as tracing the guide under a particle plate and replaying the model;
    transforms are deterministic and carry no density).
    """
    data = program.observations(x)
    if any(v.dim() != 2 for v in data.values()):
        raise ValueError(f"observations must be (batch, features), got shapes {[tuple(v.shape) for v in data.values()]}")
    return iw_terms(program, data, particles).log_weights()


_COMPILED: "weakref.WeakKeyDictionary[Program, dict]" = weakref.WeakKeyDictionary()


def compiled_log_weights(program: Program):
    """``log_weights`` of ``program`` under ``torch.compile`` (one per program and
    particle count; static shapes, so a smaller last chunk or batch compiles once more)."""
    cache = _COMPILED.setdefault(program, {})

    def run(data, particles: int) -> torch.Tensor:
        if particles not in cache:
            # fallback_random: the draws of eager torch for the same seed (so the estimate is eager's)
            cache[particles] = torch.compile(lambda d: log_weights(program, d, particles), dynamic=False,
                                             options={"fallback_random": True})
        return cache[particles](data)

    return run


def iw_log_likelihood(program: Program, x, samples: int = 1000, chunk: int = 100,
                      precision: str = "fp32", fold: bool = True, compile: bool = False) -> torch.Tensor:
    """Per-data-point importance-weighted estimate of ``log p(x)`` with ``samples`` particles: ``(B,)``.

    Particles are drawn ``chunk`` at a time (the last chunk may be smaller) and
    accumulated with a running logsumexp, so peak memory is that of one chunk.
    ``precision="bf16"`` runs the networks' matmuls in bf16 with the log densities in
    float32 (:mod:`hiervae.nn.precision`): about twice as fast on a CPU with AVX512-BF16,
    not the default (``hiervae eval`` reports fp32; see docs/performance.md).
    ``fold``: BatchNorm folded into the next Linear (:func:`inference_mode`); ``False``
    only has an effect outside an enclosing folded ``inference_mode``.  ``compile``: each
    chunk's log weights through ``torch.compile`` (:func:`compiled_log_weights`): the same
    estimator (its own random stream), worth its compilation time on long evaluations.
    """
    if samples < 1 or chunk < 1:
        raise ValueError(f"samples and chunk must be positive, got {samples} and {chunk}")
    data = program.observations(x)
    first = data.first
    weights = compiled_log_weights(program) if compile else (lambda d, n: log_weights(program, d, n))
    with inference_mode(program, fold), network_precision(program, precision, first.device.type):
        acc = torch.full((data.size,), -math.inf, dtype=torch.float64, device=first.device)
        done = 0
        while done < samples:
            n = min(chunk, samples - done)
            lw = weights(data, n)
            acc = torch.logaddexp(acc, torch.logsumexp(lw.double(), 0))
            done += n
        return (acc - math.log(samples)).to(first.dtype)
