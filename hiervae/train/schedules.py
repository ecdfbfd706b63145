"""KL-weight (beta) and learning-rate schedules: pure functions of the epoch.

Epochs are 0-based.  A schedule is a function of (possibly fractional) training
progress in epochs.  The trainer asks :meth:`BetaPlan.at_step` for the beta of step
``k`` of the ``S`` steps of epoch ``e``: a *stepwise* warm-up (``linear``) is evaluated at
``e + k / S``, the others (``geometric``, ``constant``, the reconstruction phase) at ``e``,
i.e. one value for the whole epoch.  The learning rate is per epoch.

Training runs in up to three phases (paper, section 9.1)::

    [0, R)            reconstruction only: beta = 0          (train.reconstruction_epochs = R)
    [R, R + W)        KL warm-up: beta = warmup(e - R)       (train.kl_warmup)
    [R + W, ...)      the full ELBO: beta = 1

The warm-up schedules are registered in :data:`BETA_SCHEDULES` under the spec's
``schedule`` name (one class, one line each):

* ``geometric`` (paper, section 5.1): for n = 0..N-1 train 2^n units at
  beta_n = 10^(n/N - 1), with beta_0 = 0; level N has beta_N = 10^0 = 1 and lasts for
  the rest of training.  The warm-up's ``epochs`` W hold 2^N units, so one unit is
  W / 2^N epochs and level n covers epochs [(2^n - 1) W / 2^N, (2^(n+1) - 1) W / 2^N).
  With the paper's settings (N = 10, W = 1024; N = 8, W = 256) a unit is exactly one
  epoch: level n lasts 2^n epochs, as in the paper, and beta reaches 1 at epoch
  2^N - 1 = W - W/2^N.  (Scaling all 2^(N+1) - 1 units, level N included, into W
  would halve every level of the paper's schedule.)  When W < 2^N the first levels
  last less than an epoch and are skipped, except that epoch 0 always has beta_0 = 0.
* ``linear`` (stepwise): beta = t / W at training progress t = e + k / S (epochs), from
  0 at the first warm-up step to 1 at epoch W, rising at every step.  Why not one value
  per epoch, e / W: that staircase rounds down, so the whole first warm-up epoch would
  train at beta = 0 -- a reconstruction-only phase the paper does not ask for (Table 7:
  "linear" warm-up; the SeRe-MAF's beta = 0 phase is a separate, explicit one).  At
  beta = 0 nothing bounds the posterior's scale, and where the likelihood is invariant
  to it (the ResNet decoder normalises its input feature map with batch norm) the
  optimiser lets it drift (``benchmarks/kl_warmup_probe.py`` measures it).  A continuous ramp is also what a linear
  warm-up is (Bowman et al. 2016 anneal per step; Sonderby et al. 2016 increase beta
  linearly over the first N_t epochs).  The geometric schedule keeps whole epochs:
  the paper defines its levels in epochs, beta_0 = 0 for the first one included.
* ``constant``: beta = ``beta`` throughout (no warm-up; W = 0).

Learning rate (:data:`LR_SCHEDULES`, ``train.lr_schedule``):

* ``constant``: ``train.optimizer.lr``.
* ``cosine``: lr * (1 + cos(pi * e / T)) / 2 for e < T, then the constant lr.  T is
  the reconstruction phase when there is one (paper Table 8: cosine during epochs
  [1, 350], the reconstruction phase, then constant 1e-3), else all of training
  (``train.epochs``), i.e. a plain cosine decay.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from hiervae.language import schema as S
from hiervae.registry import Registry


class BetaSchedule(ABC):
    """beta of the KL term as a function of the epoch within the warm-up (0-based)."""

    stepwise: ClassVar[bool] = False
    """True: evaluated at every step (fractional epochs); False: once per epoch."""

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: Any) -> "BetaSchedule": ...

    @abstractmethod
    def __call__(self, epoch: float) -> float: ...

    @property
    @abstractmethod
    def epochs(self) -> int:
        """Length of the warm-up: beta is final from this epoch on."""


BETA_SCHEDULES: Registry[type[BetaSchedule]] = Registry("beta schedule")


@BETA_SCHEDULES.register("geometric")
@dataclass(frozen=True)
class GeometricWarmup(BetaSchedule):
    """Paper 5.1: 2^n units at beta_n = 10^(n/N - 1), beta_0 = 0; 2^N units in ``epochs``."""

    levels: int = 10
    warmup_epochs: int = 1024

    def __post_init__(self):
        if self.levels < 1 or self.warmup_epochs < 1:
            raise ValueError(f"geometric warm-up needs levels >= 1 and epochs >= 1, got {self.levels}, {self.warmup_epochs}")

    @classmethod
    def from_spec(cls, spec: S.GeometricWarmup) -> "GeometricWarmup":
        return cls(spec.levels, spec.epochs)

    @property
    def epochs(self) -> int:
        return self.warmup_epochs

    def beta_of_level(self, n: int) -> float:
        return 0.0 if n == 0 else 10.0 ** (n / self.levels - 1.0)

    def level(self, epoch: float) -> int:
        """The level n that epoch ``epoch`` (its start) belongs to."""
        scaled = max(epoch, 0) * 2**self.levels  # in units of 1 / warmup_epochs (exact for int epochs)
        n = 0
        while n < self.levels and scaled >= (2 ** (n + 1) - 1) * self.warmup_epochs:
            n += 1
        return n

    def boundaries(self) -> list[tuple[int, float, float, float]]:
        """(level, beta, first epoch, end epoch) of each level, in (fractional) epochs."""
        unit = self.warmup_epochs / 2**self.levels
        out = [(n, self.beta_of_level(n), (2**n - 1) * unit, (2 ** (n + 1) - 1) * unit) for n in range(self.levels)]
        out.append((self.levels, 1.0, (2**self.levels - 1) * unit, math.inf))
        return out

    def __call__(self, epoch: float) -> float:
        return self.beta_of_level(self.level(epoch))


@BETA_SCHEDULES.register("linear")
@dataclass(frozen=True)
class LinearWarmup(BetaSchedule):
    """beta = t / W for training progress t in epochs (fractional), then 1; stepwise."""

    warmup_epochs: int
    stepwise: ClassVar[bool] = True

    def __post_init__(self):
        if self.warmup_epochs < 1:
            raise ValueError(f"linear warm-up needs epochs >= 1, got {self.warmup_epochs}")

    @classmethod
    def from_spec(cls, spec: S.LinearWarmup) -> "LinearWarmup":
        return cls(spec.epochs)

    @property
    def epochs(self) -> int:
        return self.warmup_epochs

    def __call__(self, epoch: float) -> float:
        return min(max(epoch, 0.0) / self.warmup_epochs, 1.0)


@BETA_SCHEDULES.register("constant")
@dataclass(frozen=True)
class ConstantBeta(BetaSchedule):
    beta: float = 1.0

    @classmethod
    def from_spec(cls, spec: S.ConstantBeta) -> "ConstantBeta":
        return cls(spec.beta)

    @property
    def epochs(self) -> int:
        return 0

    def __call__(self, epoch: float) -> float:
        return self.beta


@dataclass(frozen=True)
class BetaPlan:
    """The whole beta schedule of a run: reconstruction phase, then the warm-up."""

    warmup: BetaSchedule
    reconstruction_epochs: int = 0

    @classmethod
    def from_train(cls, train: S.TrainSpec) -> "BetaPlan":
        schedule = BETA_SCHEDULES.get(train.kl_warmup.schedule)
        return cls(schedule.from_spec(train.kl_warmup), train.reconstruction_epochs)

    def __call__(self, epoch: float) -> float:
        if epoch < self.reconstruction_epochs:
            return 0.0
        return self.warmup(epoch - self.reconstruction_epochs)

    def at_step(self, epoch: int, step: int, steps: int) -> float:
        """beta of step ``step`` (0-based) of the ``steps`` steps of epoch ``epoch``.

        A pure function of its arguments, so a run resumed at an epoch boundary sees
        the same betas as an uninterrupted one.  The reconstruction phase ends at an
        epoch boundary, so a stepwise warm-up starts at 0 on the first step after it.
        """
        if not 0 <= step < steps:
            raise ValueError(f"step must be in [0, {steps}), got {step}")
        if epoch < self.reconstruction_epochs or not self.warmup.stepwise:
            return self(epoch)
        return self(epoch + step / steps)

    def epoch_betas(self, epoch: int, steps: int) -> list[float]:
        """The betas of the ``steps`` steps of epoch ``epoch`` (:meth:`at_step`)."""
        return [self.at_step(epoch, k, steps) for k in range(steps)]

    def phase(self, epoch: float) -> str:
        if epoch < self.reconstruction_epochs:
            return "reconstruction"
        if epoch < self.reconstruction_epochs + self.warmup.epochs:
            return "warmup"
        return "elbo"


# ---------------------------------------------------------------- learning rate
class LRSchedule(ABC):
    @classmethod
    @abstractmethod
    def from_train(cls, train: S.TrainSpec) -> "LRSchedule": ...

    @abstractmethod
    def __call__(self, epoch: float) -> float: ...


LR_SCHEDULES: Registry[type[LRSchedule]] = Registry("learning-rate schedule")


@LR_SCHEDULES.register("constant")
@dataclass(frozen=True)
class ConstantLR(LRSchedule):
    lr: float

    @classmethod
    def from_train(cls, train: S.TrainSpec) -> "ConstantLR":
        return cls(train.optimizer.lr)

    def __call__(self, epoch: float) -> float:
        return self.lr


@LR_SCHEDULES.register("cosine")
@dataclass(frozen=True)
class CosineLR(LRSchedule):
    """lr (1 + cos(pi e / T)) / 2 for e < T, then lr (paper Table 8)."""

    lr: float
    period: int

    @classmethod
    def from_train(cls, train: S.TrainSpec) -> "CosineLR":
        return cls(train.optimizer.lr, train.reconstruction_epochs or train.epochs)

    def __call__(self, epoch: float) -> float:
        if epoch >= self.period:
            return self.lr
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * max(epoch, 0.0) / self.period))


def beta_schedule(train: S.TrainSpec) -> BetaPlan:
    return BetaPlan.from_train(train)


def lr_schedule(train: S.TrainSpec) -> LRSchedule:
    return LR_SCHEDULES.get(train.lr_schedule).from_train(train)
