"""Beta (KL weight) and learning-rate schedules: pure functions of the epoch."""

from __future__ import annotations

import math
import typing

import pytest

from hiervae.language import schema as S
from hiervae.train.schedules import (
    BETA_SCHEDULES, LR_SCHEDULES, BetaPlan, ConstantBeta, ConstantLR, CosineLR, GeometricWarmup, LinearWarmup,
    beta_schedule, lr_schedule,
)


def betas(schedule, n):
    return [schedule(e) for e in range(n)]


# ---------------------------------------------------------------- geometric (paper 5.1)
def test_geometric_paper_setting_trains_2_to_the_n_epochs_per_level():
    g = GeometricWarmup(levels=10, warmup_epochs=1024)
    for n in range(10):
        first, end = 2**n - 1, 2 ** (n + 1) - 1
        expected = 0.0 if n == 0 else 10 ** (n / 10 - 1)
        assert [g(e) for e in range(first, end)] == pytest.approx([expected] * (end - first)), n
        assert end - first == 2**n
    assert g(0) == 0.0  # beta_0 = 0
    assert g(1) == pytest.approx(10**-0.9)
    assert g(1022) == pytest.approx(10**-0.1)
    assert g(1023) == 1.0 and g(1024) == 1.0 and g(10_000) == 1.0


def test_geometric_paper_section_9_setting():
    g = GeometricWarmup(levels=8, warmup_epochs=256)
    assert [g(e) for e in (0, 1, 3, 127, 254, 255)] == pytest.approx([0, 10 ** (1 / 8 - 1), 10 ** (2 / 8 - 1), 10 ** (7 / 8 - 1), 10 ** (7 / 8 - 1), 1.0])


@pytest.mark.parametrize("levels,epochs", [(10, 1024), (10, 2048), (10, 10), (3, 16), (4, 100), (8, 256), (1, 1), (5, 7)])
def test_geometric_is_monotone_starts_at_0_ends_at_1(levels, epochs):
    g = GeometricWarmup(levels, epochs)
    values = betas(g, epochs + 5)
    assert values[0] == 0.0
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert values[epochs] == 1.0 and values[-1] == 1.0
    allowed = [0.0, 1.0] + [10 ** (n / levels - 1) for n in range(1, levels)]
    assert all(any(math.isclose(v, a) for a in allowed) for v in values)


def test_geometric_scales_level_lengths_to_the_warmup_epochs():
    g = GeometricWarmup(levels=10, warmup_epochs=2048)  # a unit is two epochs
    for n in range(10):
        first, end = 2 * (2**n - 1), 2 * (2 ** (n + 1) - 1)
        assert all(g(e) == pytest.approx(g.beta_of_level(n)) for e in range(first, end))
        assert g(end) > g(end - 1)
    g = GeometricWarmup(levels=3, warmup_epochs=16)  # 8 units of 2 epochs: level lengths 2, 4, 8, then beta 1
    assert betas(g, 17) == pytest.approx([0.0] * 2 + [10 ** (-2 / 3)] * 4 + [10 ** (-1 / 3)] * 8 + [1.0] * 3)


def test_geometric_boundaries_cover_the_warmup():
    g = GeometricWarmup(levels=3, warmup_epochs=16)
    bounds = g.boundaries()
    assert [b[0] for b in bounds] == [0, 1, 2, 3]
    assert bounds[0][1] == 0.0 and bounds[-1][1] == 1.0 and bounds[-1][3] == math.inf
    assert all(a[3] == b[2] for a, b in zip(bounds, bounds[1:]))
    assert [b[3] - b[2] for b in bounds[:-1]] == [2, 4, 8]


def test_geometric_rejects_nonsense():
    with pytest.raises(ValueError):
        GeometricWarmup(0, 10)
    with pytest.raises(ValueError):
        GeometricWarmup(3, 0)


# ---------------------------------------------------------------- linear, constant
def test_linear_warmup():
    w = LinearWarmup(10)
    assert betas(w, 13) == pytest.approx([e / 10 for e in range(10)] + [1.0] * 3)
    assert w(5) == 0.5 and w(2.5) == 0.25
    with pytest.raises(ValueError):
        LinearWarmup(0)


def test_constant_beta():
    assert betas(ConstantBeta(0.3), 4) == [0.3] * 4
    assert ConstantBeta().epochs == 0 and ConstantBeta()(0) == 1.0


# ---------------------------------------------------------------- the plan and the registry
def test_reconstruction_phase_comes_before_the_warmup():
    plan = BetaPlan(LinearWarmup(4), reconstruction_epochs=3)
    assert betas(plan, 9) == pytest.approx([0, 0, 0, 0, 0.25, 0.5, 0.75, 1, 1])
    assert [plan.phase(e) for e in (0, 2, 3, 6, 7, 100)] == ["reconstruction"] * 2 + ["warmup"] * 2 + ["elbo"] * 2
    geo = BetaPlan(GeometricWarmup(10, 1024), reconstruction_epochs=350)
    assert geo(349) == 0.0 and geo(350) == 0.0 and geo(351) == pytest.approx(10**-0.9) and geo(350 + 1023) == 1.0


def test_plan_from_train_spec():
    train = S.TrainSpec(reconstruction_epochs=2, kl_warmup={"schedule": "geometric", "levels": 2, "epochs": 4})
    plan = beta_schedule(train)
    assert isinstance(plan.warmup, GeometricWarmup)
    assert betas(plan, 7) == pytest.approx([0, 0, 0, 10**-0.5, 10**-0.5, 1, 1])
    assert betas(beta_schedule(S.TrainSpec()), 3) == [1.0] * 3  # default: constant beta 1
    assert betas(beta_schedule(S.TrainSpec(kl_warmup={"schedule": "constant", "beta": 0.5})), 2) == [0.5, 0.5]


def test_every_schema_schedule_has_one_registry_entry():
    names = set()
    for model in typing.get_args(typing.get_args(S.Warmup)[0]):
        names |= set(typing.get_args(model.model_fields["schedule"].annotation))
    assert names == set(BETA_SCHEDULES.names())
    assert set(typing.get_args(S.TrainSpec.model_fields["lr_schedule"].annotation)) == set(LR_SCHEDULES.names())
    with pytest.raises(KeyError, match="known: constant, geometric, linear"):
        BETA_SCHEDULES.get("cyclic")


# ---------------------------------------------------------------- learning rate
def test_cosine_lr_over_the_reconstruction_phase_then_constant():
    lr = lr_schedule(S.TrainSpec(epochs=1500, reconstruction_epochs=350, lr_schedule="cosine", optimizer={"lr": 1e-3}))
    assert isinstance(lr, CosineLR) and lr.period == 350
    assert lr(0) == pytest.approx(1e-3)
    assert lr(175) == pytest.approx(0.5e-3)
    assert 0 < lr(349) < 1e-6
    assert lr(350) == 1e-3 and lr(1499) == 1e-3
    values = [lr(e) for e in range(350)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_cosine_lr_over_all_epochs_without_reconstruction_phase():
    lr = lr_schedule(S.TrainSpec(epochs=40, lr_schedule="cosine", optimizer={"lr": 3e-3}))
    assert lr.period == 40
    assert lr(0) == pytest.approx(3e-3) and lr(20) == pytest.approx(1.5e-3) and lr(39) < 1e-5


def test_constant_lr():
    lr = lr_schedule(S.TrainSpec(optimizer={"lr": 2e-4}))
    assert isinstance(lr, ConstantLR) and [lr(e) for e in (0, 5, 500)] == [2e-4] * 3


# ---------------------------------------------------------------- per step (BetaPlan.at_step)
def test_linear_warmup_rises_at_every_step_and_is_zero_only_at_the_first():
    """The old per-epoch staircase e / W trained the whole first epoch at beta = 0."""
    plan = BetaPlan(LinearWarmup(4))
    S_ = 5
    steps = [b for e in range(6) for b in plan.epoch_betas(e, S_)]
    expected = [min((e + k / S_) / 4, 1.0) for e in range(6) for k in range(S_)]
    assert steps == pytest.approx(expected, abs=1e-15)
    assert steps[0] == 0.0 and all(b > 0 for b in steps[1:])
    warmup = steps[: 4 * S_]
    assert all(a < b for a, b in zip(warmup, warmup[1:]))  # strictly increasing during the warm-up
    assert steps[4 * S_ :] == [1.0] * (2 * S_)
    assert plan.at_step(0, 1, 391) == pytest.approx(1 / (391 * 4))


def test_epoch_wise_schedules_keep_one_beta_per_epoch():
    """geometric: the paper defines its levels in whole epochs, beta_0 = 0 for epoch 0."""
    geo = BetaPlan(GeometricWarmup(2, 4))
    for e in range(6):
        assert geo.epoch_betas(e, 7) == [geo(e)] * 7
    assert geo.epoch_betas(0, 7) == [0.0] * 7
    assert BetaPlan(ConstantBeta(0.3)).epoch_betas(3, 4) == [0.3] * 4


def test_reconstruction_phase_is_whole_epochs_then_the_linear_ramp_starts_at_zero():
    plan = BetaPlan(LinearWarmup(2), reconstruction_epochs=3)
    assert [b for e in range(3) for b in plan.epoch_betas(e, 4)] == [0.0] * 12
    assert plan.epoch_betas(3, 4) == pytest.approx([0, 1 / 8, 2 / 8, 3 / 8])
    assert plan.epoch_betas(4, 4) == pytest.approx([4 / 8, 5 / 8, 6 / 8, 7 / 8])
    assert plan.epoch_betas(5, 4) == [1.0] * 4


def test_at_step_refuses_a_step_outside_the_epoch():
    plan = BetaPlan(LinearWarmup(2))
    for step, steps in [(-1, 4), (4, 4), (0, 0)]:
        with pytest.raises(ValueError, match="step must be in"):
            plan.at_step(0, step, steps)


def test_stepwise_flags_of_the_registered_schedules():
    assert {name: BETA_SCHEDULES.get(name).stepwise for name in ("linear", "geometric", "constant")} == {
        "linear": True, "geometric": False, "constant": False}
