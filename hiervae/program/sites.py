"""How a site of the compiled program is handled: as a Pyro statement, or directly.

:class:`~hiervae.program.program.Program` has ONE walk over the model graph and ONE
over the guide; at every site the walk asks a *site handler* what to do:

* :class:`PyroSites`: the Pyro program (``pyro.sample`` inside ``pyro.plate("data")``,
  ``poutine.scale(beta)`` on latents, transforms as masked-``Delta`` deterministic
  sites).  This is what ``program.model`` / ``program.guide`` run, so the program
  composes with any Pyro inference (``Trace_ELBO``, ``TraceMeanField_ELBO``, replay,
  conditioning) and is the *specification* the direct path is tested against.
* :class:`DirectSites`: no Pyro machinery.  A latent is drawn with ``rsample`` (the
  same generator calls in the same order as ``pyro.sample`` under the data plate, so
  the same seed gives the same noise) or, when replaying, taken from the given
  values; every distribution is recorded by name so the objective can score it.
  This is the training and IW path: no trace, no replay, no message passing, no
  ``Delta`` objects, and a shared transform the guide computed is simply reused.

The handlers have the same four methods; the walks never test which one they have.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Iterator, Mapping

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch.distributions import Distribution

DATA_PLATE = "data"

Draw = Callable[[Distribution], torch.Tensor]
_NOISE: list[Draw] = []  # innermost last: who draws the direct path's latents


def _rsample(fn: Distribution) -> torch.Tensor:
    return fn.rsample()  # the graph builder admits reparameterised latent families only


@contextlib.contextmanager
def noise_source(draw: Draw) -> Iterator[None]:
    """Inside this block :class:`DirectSites` draws each latent as ``draw(fn)`` (``fn``
    already expanded to the batch shape) instead of ``fn.rsample()``.

    The direct path's counterpart of a Pyro messenger that sets sample values (data
    parallel training draws the global batch's noise and keeps this rank's rows)."""
    _NOISE.append(draw)
    try:
        yield
    finally:
        _NOISE.remove(draw)


class PyroSites:
    """Sites as Pyro statements: ``program.model`` / ``program.guide``.

    ``in_guide`` marks transform sites auxiliary (the model records the same names as
    observed: Pyro's model/guide match check).
    """

    def __init__(self, beta: float | torch.Tensor = 1.0, in_guide: bool = False):
        self.beta, self.in_guide = beta, in_guide

    def plate(self, size: int) -> ContextManager:
        return pyro.plate(DATA_PLATE, size, dim=-1)

    def sample(self, name: str, fn: Distribution) -> torch.Tensor:
        with poutine.scale(scale=self.beta):
            return pyro.sample(name, fn)

    def observe(self, name: str, fn: Distribution, value: torch.Tensor) -> torch.Tensor:
        return pyro.sample(name, fn, obs=value)

    def deterministic(self, name: str, value: torch.Tensor) -> torch.Tensor:
        delta = dist.Delta(value, event_dim=1).mask(False)
        infer = {"_deterministic": True, "is_auxiliary": self.in_guide}
        return pyro.sample(name, delta, obs=value, infer=infer)


class DirectSites:
    """Sites evaluated directly, recording ``name -> distribution`` in :attr:`dists`.

    ``batch_shape`` is the shape every latent is drawn at (``(B,)`` for training,
    ``(particles, B)`` for importance weighting); a distribution with a smaller batch
    shape (a root without context, or a factor of ``x`` alone under particles) is
    expanded to it first, as Pyro's plates do.  ``replay`` holds values to take
    instead of drawing (the model on the guide's sample).
    """

    def __init__(self, batch_shape: torch.Size | tuple[int, ...], replay: Mapping[str, torch.Tensor] | None = None):
        self.batch_shape = torch.Size(batch_shape)
        self.replay = replay or {}
        self.dists: dict[str, Distribution] = {}
        self.values: dict[str, torch.Tensor] = {}  # what the walk returned (set by the caller)

    def plate(self, size: int) -> ContextManager:
        return contextlib.nullcontext()

    def sample(self, name: str, fn: Distribution) -> torch.Tensor:
        if fn.batch_shape != self.batch_shape:
            fn = fn.expand(self.batch_shape)
        self.dists[name] = fn
        if name in self.replay:
            return self.replay[name]
        return (_NOISE[-1] if _NOISE else _rsample)(fn)

    def observe(self, name: str, fn: Distribution, value: torch.Tensor) -> torch.Tensor:
        self.dists[name] = fn
        return value

    def deterministic(self, name: str, value: torch.Tensor) -> torch.Tensor:
        return value
