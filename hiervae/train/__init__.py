"""Training: schedules, one fused Adam, the epoch loop with checkpoints and metrics.

    from hiervae.train import fit
    result = fit("specs/quickstart.yaml", ["train.epochs=3"], out="runs/qs")
    result.valid_elbo, result.run.metrics

``hiervae fit SPEC`` is the command-line front end (:mod:`hiervae.cli`).
"""

from hiervae.train.loop import FitResult, Trainer, TrainState, check_data_matches, fit, resolve_device, select_analytic_kl
from hiervae.train.optim import make_optimizer
from hiervae.train.schedules import (
    BETA_SCHEDULES, LR_SCHEDULES, BetaPlan, BetaSchedule, ConstantBeta, ConstantLR, CosineLR, GeometricWarmup,
    LinearWarmup, LRSchedule, beta_schedule, lr_schedule,
)

__all__ = [
    "fit", "FitResult", "Trainer", "TrainState", "check_data_matches", "resolve_device", "select_analytic_kl",
    "make_optimizer", "BETA_SCHEDULES", "LR_SCHEDULES", "BetaPlan", "BetaSchedule", "ConstantBeta", "ConstantLR",
    "CosineLR", "GeometricWarmup", "LinearWarmup", "LRSchedule", "beta_schedule", "lr_schedule",
]
