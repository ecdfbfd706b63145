"""The two engines: Pyro SVI (`train.engine: pyro`) with every listed ELBO and optimiser,
the direct engine as the same trajectory in float64, IWAE = RenyiELBO(0, K), DReG, and
the compiled program as a Pyro program a user's own SVI loop trains."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyro
import pytest
import torch

from hiervae.data import load_dataset
from hiervae.graph import build_graph, load_graph
from hiervae.language import load_spec
from hiervae.policy import select_objective
from hiervae.program import build_program
from hiervae.program.iwae import dreg_surrogate, guide_parameters, iw_terms
from hiervae.train import Trainer

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"
SMALL = ["train.free_bits=0", "train.batch_size=64", "train.kl_warmup={schedule: constant}"]


def _trainer(overrides, dtype=torch.float32, seed=0) -> Trainer:
    spec = load_spec(QUICKSTART, [*SMALL, *overrides])
    graph = build_graph(spec)
    objective = select_objective(graph, spec.source)
    splits = load_dataset(graph.data.dataset, binarize=graph.data.binarize, validation=graph.data.validation)
    splits = dataclasses.replace(splits, train=splits.train.to(dtype), valid=splits.valid.to(dtype), test=splits.test.to(dtype))
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    program = build_program(graph).to(dtype)
    return Trainer(program, graph, splits, device=torch.device("cpu"), analytic_kl=objective.analytic_kl,
                   objective=objective)


def _params(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.program.parameters()])


@pytest.mark.parametrize("overrides", [
    ["train.elbo=mean_field"],
    ["train.elbo=trace"],
    ["train.elbo=trace", "train.optimizer.name=adamw", "train.optimizer.weight_decay=0.01", "train.optimizer.clip_norm=0.5"],
], ids=["mean_field-adam", "trace-adam", "trace-adamw-clip"])
def test_the_direct_engine_follows_pyro_svi_step_for_step_in_float64(overrides):
    """Same seed, same batches: the direct engine's parameters after each of 6 steps are
    SVI's with the corresponding Pyro ELBO and pyro.optim optimiser."""
    direct = _trainer(overrides, torch.float64)
    svi = _trainer([*overrides, "train.engine=pyro"], torch.float64)
    assert svi.engine is not None and direct.engine is None
    start = _params(direct)
    assert torch.equal(start, _params(svi))
    from hiervae.data.observations import Observations
    from hiervae.train.metrics import EpochStats

    batches = [Observations({k: v.double() for k, v in x.items()}) for x in list(direct.batches.epoch(0))[:6]]

    direct.beta.fill_(0.7)
    svi.beta.fill_(0.7)
    pyro.set_rng_seed(1)
    stats = EpochStats(direct.program.latents, "cpu")
    trajectory = []
    for x in batches:
        direct.train_step(x, stats)
        trajectory.append(_params(direct))
    pyro.set_rng_seed(1)
    svi.program.train()
    for k, x in enumerate(batches):
        svi.train_step(x, EpochStats(svi.program.latents, "cpu"))
        torch.testing.assert_close(_params(svi), trajectory[k], rtol=1e-9, atol=1e-11, msg=f"step {k + 1}")
    assert (trajectory[-1] - start).abs().max() > 1e-3  # guard: the parameters moved


@pytest.mark.parametrize("overrides", [
    ["train.engine=pyro", "train.elbo=mean_field"],
    ["train.engine=pyro", "train.elbo=trace", "train.num_particles=2"],
    ["train.engine=pyro", "train.elbo=tracegraph"],
    ["train.engine=pyro", "train.elbo=renyi", "train.renyi_alpha=0.5", "train.num_particles=3"],
    ["train.engine=pyro", "train.elbo=iwae", "train.num_particles=3"],
    ["train.engine=pyro", "train.optimizer.name=clipped_adam", "train.optimizer.clip_norm=5", "train.optimizer.lrd=0.999"],
    ["train.engine=pyro", "train.optimizer.name=adamw", "train.optimizer.weight_decay=0.01"],
    ["train.engine=pyro", "train.optimizer.clip_norm=1"],
    ["train.elbo=iwae", "train.num_particles=4"],
    ["train.elbo=iwae", "train.num_particles=4", "train.dreg=true"],
    ["train.optimizer.name=adamw"],
], ids=lambda o: "+".join(s.split("=")[1] for s in o))
def test_every_engine_elbo_and_optimiser_trains(overrides):
    trainer = _trainer(overrides)
    before = trainer.validate()["valid_elbo"]
    for epoch in range(2):
        summary = trainer.train_epoch(epoch)
    after = trainer.validate()["valid_elbo"]
    assert summary["nonfinite"] == 0
    assert after - before > 0.05 * abs(before), (before, after)  # 50 steps close about half the gap here


def _tiny_program(seed=0):
    graph = load_graph(QUICKSTART)
    torch.manual_seed(seed)
    program = build_program(graph).double()
    x = (torch.rand(16, 64, generator=torch.Generator().manual_seed(1)) < 0.3).double()
    return program, x


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_iwae_is_renyi_elbo_at_alpha_zero_in_value_and_gradient(beta):
    program, x = _tiny_program()
    k = 5
    pyro.set_rng_seed(3)
    renyi = pyro.infer.RenyiELBO(alpha=0, num_particles=k, vectorize_particles=True, max_plate_nesting=1)
    expected = renyi.loss_and_grads(program.model, program.guide, x, beta)
    expected_grads = [p.grad.clone() for p in program.parameters()]
    program.zero_grad()
    pyro.set_rng_seed(3)
    ours = -iw_terms(program, x, k).bound(beta).sum()
    ours.backward()
    assert ours.item() == pytest.approx(expected, rel=1e-12)
    for p, g in zip(program.parameters(), expected_grads):
        torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12)
    assert sum(g.abs().sum() for g in expected_grads) > 0


def test_dreg_has_the_iwae_gradient_in_expectation_with_less_variance():
    """Per-batch means of the guide's gradient over 24 batches of one repeated data point:
    DReG's and IWAE's agree within their standard errors, and DReG's spread is smaller."""
    program, x = _tiny_program()
    guide = guide_parameters(program)
    assert guide and len(guide) < len(list(program.parameters()))
    x = x[:1].expand(500, -1)
    estimates = {"iwae": [], "dreg": []}
    torch.manual_seed(7)
    for _ in range(24):
        terms = iw_terms(program, x, 8)
        value = -terms.bound().sum() / x.shape[0]
        iwae = torch.autograd.grad(value, guide, retain_graph=True)
        dreg = torch.autograd.grad(dreg_surrogate(program, x, terms) / x.shape[0], guide)
        estimates["iwae"].append(torch.cat([g.flatten() for g in iwae]))
        estimates["dreg"].append(torch.cat([g.flatten() for g in dreg]))
    iwae, dreg = torch.stack(estimates["iwae"]), torch.stack(estimates["dreg"])
    se = ((iwae.var(0) + dreg.var(0)) / iwae.shape[0]).sqrt()
    z = (iwae.mean(0) - dreg.mean(0)).abs() / (se + 1e-12)
    moving = se > 0
    assert (z[moving] < 4).float().mean() > 0.97, z[moving].max()
    assert dreg.var(0).sum() < 0.7 * iwae.var(0).sum()
    assert not torch.allclose(iwae[0], dreg[0])  # guard: a different estimator


def test_iwae_and_dreg_leave_the_model_gradient_alone():
    program, x = _tiny_program()
    guide = {id(p) for p in guide_parameters(program)}
    model = [p for p in program.parameters() if id(p) not in guide]
    trainer_like = []
    for dreg in (False, True):
        torch.manual_seed(3)
        terms = iw_terms(program, x, 4)
        value = -terms.bound().sum()
        trainer_like.append(torch.autograd.grad(value, model, retain_graph=dreg))
    for a, b in zip(*trainer_like):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("elbo", [
    pyro.infer.Trace_ELBO(), pyro.infer.TraceMeanField_ELBO(), pyro.infer.TraceGraph_ELBO(),
    pyro.infer.RenyiELBO(alpha=0, num_particles=3),
], ids=lambda e: type(e).__name__)
def test_a_users_own_svi_loop_trains_the_compiled_program(elbo):
    """`SVI(program.model, program.guide, ...)` as written: the program registers its
    modules, also when another program left same-named entries in the param store."""
    graph = load_graph(QUICKSTART)
    build_program(graph).model(torch.zeros(2, 64))  # a stale program's parameters in the store
    torch.manual_seed(0)
    program = build_program(graph)
    x = load_dataset("digits", binarize="dynamic", validation=200).train[:256].bernoulli(generator=torch.Generator().manual_seed(0))
    svi = pyro.infer.SVI(program.model, program.guide, pyro.optim.Adam({"lr": 3e-3}), elbo)
    losses = [svi.step(x) for _ in range(40)]
    store = pyro.get_param_store()
    assert all(store[f"hiervae$$${n}"] is p for n, p in program.named_parameters())
    assert sum(losses[-5:]) < 0.85 * sum(losses[:5]), (losses[:5], losses[-5:])
