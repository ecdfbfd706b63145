"""The compiled program: Pyro semantics, shared transforms, shapes, gradients, determinism."""

from __future__ import annotations

import warnings
from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine
from torch.distributions import kl_divergence

from hiervae.errors import SpecError
from hiervae.graph import build_graph, load_graph
from hiervae.language import parse_spec
from hiervae.program import build_program, elbo_terms, loss

SPECS = Path(__file__).resolve().parents[2] / "specs"
MLP_FAMILY = ["quickstart", "sere_mlp_mnist", "sere_mlp_mnist_faithful", "dlgm_mnist", "ladder_mnist", "iaf_mnist", "sere_iaf_mnist"]


def program_for(name: str, dtype=torch.float32, **overrides):
    graph = load_graph(SPECS / f"{name}.yaml", [f"{k}={v}" for k, v in overrides.items()])
    return build_program(graph).to(dtype)


def data_for(program, batch=6, dtype=torch.float32, seed=0):
    dim = program.graph.nodes[program.observed[0]].dim
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(batch, dim, generator=g)).to(dtype)


@pytest.mark.parametrize("name", ["quickstart", "ladder_mnist", "iaf_mnist", "sere_mlp_mnist"])
@pytest.mark.parametrize("beta", [0.37, 1.0])
def test_objective_equals_pyro_elbos_in_float64(name, beta):
    """Our loss from traces is Pyro's differentiable_loss, with beta != 1 too."""
    program = program_for(name, torch.float64).eval()
    x = data_for(program, dtype=torch.float64)
    for elbo, analytic in [(pyro.infer.TraceMeanField_ELBO(), True), (pyro.infer.Trace_ELBO(), False)]:
        pyro.set_rng_seed(11)
        expected = elbo.differentiable_loss(program.model, program.guide, x, beta)
        pyro.set_rng_seed(11)
        ours = loss(elbo_terms(program, x, analytic_kl=analytic), beta)
        # the same number up to float64 summation order (Pyro sums per site, we per data point)
        torch.testing.assert_close(ours, expected, rtol=1e-13, atol=0)


def test_elbo_equals_a_hand_computation():
    """Quickstart ELBO written out by hand with the program's modules, without Pyro traces."""
    program = program_for("quickstart", torch.float64).eval()
    x = data_for(program, dtype=torch.float64)
    pyro.set_rng_seed(5)
    terms = elbo_terms(program, x, analytic_kl=True)

    torch.manual_seed(5)  # pyro.set_rng_seed seeds torch: same noise, same order
    sites, factors = program.sites, program.factors
    values = {"x": x}
    kl_total = torch.zeros(x.shape[0], dtype=torch.float64)
    for l in (1, 2, 3):
        eps, z, prev = f"eps{l}", f"z{l}", f"z{l - 1}"
        factor = factors[eps]
        parts = [factor.encoders["x"](x)] + ([factor.encoders[prev](values[prev])] if l > 1 else [])
        q = factor.family.condition(torch.cat(parts, -1))
        p = sites[eps].condition(values[prev] if l > 1 else None)
        values[eps] = q.rsample()
        values[z] = sites[z].condition(values[prev] if l > 1 else None)(values[eps])
        kl_total = kl_total + kl_divergence(q, p)
    log_lik = sites["x"].condition(values["z3"]).log_prob(x)
    assert torch.allclose(terms.log_likelihood, log_lik, rtol=0, atol=1e-10)
    assert torch.allclose(terms.kl_total, kl_total, rtol=0, atol=1e-10)


def test_transforms_are_shared_between_model_and_guide():
    program = program_for("sere_mlp_mnist_faithful").eval()
    x = data_for(program)
    guide = poutine.trace(program.guide).get_trace(x)
    model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x)
    for l in range(1, 10):  # z10 is not needed by the guide
        assert torch.equal(guide.nodes[f"z{l}"]["value"], model.nodes[f"z{l}"]["value"])
    # one module per transform, reachable from both sides only through program.sites
    transform_params = {id(p) for l in range(1, 11) for p in program.sites[f"z{l}"].parameters()}
    factor_params = {id(p) for p in program.factors.parameters()}
    assert transform_params and not transform_params & factor_params
    # the guide's loss reaches the shared transform parameters (self-reflection)
    terms = elbo_terms(program, x)
    (-terms.kl["eps3"].sum()).backward()
    assert program.sites["z2"].nets[0].net.net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MLP_FAMILY)
def test_every_parameter_gets_a_gradient(name):
    program = program_for(name)
    x = data_for(program)
    loss(elbo_terms(program, x), 0.5).backward()
    missing = [n for n, p in program.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def test_site_shapes_and_plate():
    program = program_for("sere_mlp_mnist")
    x = data_for(program, batch=4)
    trace = poutine.trace(program.guide).get_trace(x)
    for l in range(1, 11):
        site = trace.nodes[f"eps{l}"]
        assert site["value"].shape == (4, 10)
        assert site["fn"].event_shape == (10,) and site["fn"].batch_shape == (4,)
        assert [f.name for f in site["cond_indep_stack"]] == ["data"]
    model = poutine.trace(program.model).get_trace(x)
    assert model.nodes["x"]["fn"].event_shape == (784,) and model.nodes["x"]["is_observed"]


def test_beta_scales_latent_sites_only_in_model_and_guide():
    program = program_for("quickstart")
    x = data_for(program)
    beta = torch.tensor(0.25)
    guide = poutine.trace(program.guide).get_trace(x, beta)
    model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x, beta)
    for l in (1, 2, 3):
        assert guide.nodes[f"eps{l}"]["scale"] == beta and model.nodes[f"eps{l}"]["scale"] == beta
    assert model.nodes["x"]["scale"] == 1.0


def test_same_seed_same_loss_and_no_pyro_warnings():
    program = program_for("sere_iaf_mnist")
    x = data_for(program)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pyro.set_rng_seed(0)
        a = loss(elbo_terms(program, x, analytic_kl=False))
        pyro.set_rng_seed(0)
        b = loss(elbo_terms(program, x, analytic_kl=False))
        pyro.infer.Trace_ELBO().differentiable_loss(program.model, program.guide, x)
    assert torch.equal(a, b)


def test_ladder_merge_is_precision_weighted():
    program = program_for("ladder_mnist", torch.float64).eval()
    x = data_for(program, dtype=torch.float64)
    guide = poutine.trace(program.guide).get_trace(x)
    values = {n: s["value"] for n, s in guide.nodes.items() if s["type"] == "sample"}
    q = guide.nodes["z3"]["fn"].base_dist
    factor = program.factors["z3"]
    upward = {"x": x}
    program.feature("d3", upward)  # the bottom-up pass up to d3
    own = factor.family.condition(factor.context({**upward, "z4": values["z4"]})).base_dist
    prior = program.sites["z3"].condition(values["z4"]).base_dist
    precision = own.scale ** -2 + prior.scale ** -2
    assert torch.allclose(q.scale, precision.rsqrt())
    assert torch.allclose(q.loc, (own.loc * own.scale ** -2 + prior.loc * prior.scale ** -2) / precision)


def test_graph_level_only_parts_are_a_clear_error():
    text = (SPECS / "quickstart.yaml").read_text().replace("affine_lowrank", "planar")
    with pytest.raises(SpecError, match=r"unknown transform 'planar'"):
        build_graph(parse_spec(text, file="q.yaml"))


def test_unknown_option_is_reported_at_its_line():
    text = (SPECS / "quickstart.yaml").read_text().replace("net: bij}", "net: bij, options: {rnak: 1}}")
    with pytest.raises(SpecError, match=r"q.yaml:\d+: model\[0\]\.nodes\.z\(l\)\.options\.rnak \(l=1\): "
                                         r"affine_lowrank: unknown option 'rnak' \(known: rank, diag_floor\)"):
        build_graph(parse_spec(text, file="q.yaml"))  # the graph builder: `check` rejects it


def test_each_shared_transform_is_evaluated_once_per_step():
    """The replayed model reuses the guide's transform values: one evaluation per transform
    and step (half the bijector work, batch-norm statistics updated once), same loss."""
    program = program_for("sere_mlp_mnist_faithful", torch.float64)
    x = data_for(program, dtype=torch.float64)
    program.kl_functions(True)  # resolved once per program (one probe evaluation), not per step
    calls = {f"z{l}": 0 for l in range(1, 11)}
    for name in calls:
        module = program.sites[name]
        original = module.condition

        def counted(context=None, _name=name, _original=original):
            calls[_name] += 1
            return _original(context)

        module.condition = counted
    pyro.set_rng_seed(2)
    ours = loss(elbo_terms(program, x), 0.5)
    assert calls == {name: 1 for name in calls}
    pyro.set_rng_seed(2)
    expected = pyro.infer.TraceMeanField_ELBO().differentiable_loss(program.model, program.guide, x, 0.5)
    torch.testing.assert_close(ours, expected, rtol=1e-13, atol=0)
