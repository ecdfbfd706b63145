"""Training: schedules, one fused Adam, the trainer, ``fit`` with checkpoints and metrics,
data parallelism.

    from hiervae.train import fit
    result = fit("specs/quickstart.yaml", ["train.epochs=3"], out="runs/qs")
    result.valid_elbo, result.run.metrics

Modules: :mod:`~hiervae.train.trainer` (the loop of one program on one device),
:mod:`~hiervae.train.fit` (orchestration), :mod:`~hiervae.train.checkpoint` (format,
resume), :mod:`~hiervae.train.collectives` (one replica of several processes),
:mod:`~hiervae.train.launch` (``--nproc``), :mod:`~hiervae.train.schedules`,
:mod:`~hiervae.train.optim`, :mod:`~hiervae.train.metrics`, :mod:`~hiervae.train.plots`.
"""

from hiervae.train.fit import FitResult, fit
from hiervae.train.optim import make_optimizer
from hiervae.train.schedules import (
    BETA_SCHEDULES,
    LR_SCHEDULES,
    BetaPlan,
    BetaSchedule,
    ConstantBeta,
    ConstantLR,
    CosineLR,
    GeometricWarmup,
    LinearWarmup,
    LRSchedule,
    beta_schedule,
    lr_schedule,
)
from hiervae.train.trainer import Trainer, TrainState

__all__ = [
    "fit", "FitResult", "Trainer", "TrainState", "make_optimizer", "BETA_SCHEDULES",
    "LR_SCHEDULES", "BetaPlan", "BetaSchedule", "ConstantBeta", "ConstantLR", "CosineLR", "GeometricWarmup",
    "LinearWarmup", "LRSchedule", "beta_schedule", "lr_schedule",
]
