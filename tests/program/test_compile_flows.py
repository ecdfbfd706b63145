"""Compiling flow models: residual chains, spline couplings shared with the guide, the
maf likelihood's context wiring, models without latents (specs/*cifar10*.yaml)."""

from __future__ import annotations

from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine

from hiervae.program import build_program, elbo_terms, loss
from hiervae.errors import SpecError
from hiervae.graph import build_graph, load_graph
from hiervae.nn import SplineCoupling
from hiervae.language import parse_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


def compiled(text: str, dtype=torch.float64, overrides=()):
    return build_program(build_graph(parse_spec(text, overrides=list(overrides)))).to(dtype)


def data(flows, n=5, dtype=torch.float64):
    return flows.pixels(n).to(dtype) * 255 / 256 + 0.5 / 256  # bin centres in (0, 1)


def test_residual_nodes_refine_the_previous_one(flows):
    """gamma1 = r1(z1), gamma2 = gamma1 + r2([gamma1, z2]): recomputed from the modules."""
    program = compiled(flows.sere_maf).eval()
    assert {n: program.graph.nodes[n].applied_to for n in program.graph.transforms} == {
        "z1": "eps1", "gamma1": None, "z2": "eps2", "gamma2": "gamma1"}
    trace = poutine.trace(program.model).get_trace(data(flows))
    v = {n: s["value"] for n, s in trace.nodes.items() if s["type"] == "sample"}
    r1 = program.sites["gamma1"].net(v["z1"])
    r2 = program.sites["gamma2"].net(torch.cat([v["gamma1"], v["z2"]], -1))
    torch.testing.assert_close(v["gamma1"], r1, rtol=0, atol=0)
    torch.testing.assert_close(v["gamma2"], r1 + r2, rtol=0, atol=0)
    assert v["gamma2"].shape == (5, 5)


def test_a_residual_node_with_two_candidate_predecessors_is_an_error(flows, one_line):
    text = flows.sere_maf.replace("given: [gamma(l-1), z(l)]", "given: [gamma(l-1), z(l)]}\n      delta(l): {transform: residual, dim: 5, given: [gamma(l), delta(l-1), z(l)]")
    one = build_graph(parse_spec(text.replace("vars: {L: 2}", "vars: {L: 1}"), file="t.yaml",
                                 overrides=["model.1.x.options.mades_per_flow=1"]))  # one z: one MADE per flow
    assert one.nodes["delta1"].applied_to == "gamma1"  # delta0 is a dropped boundary reference
    with pytest.raises(SpecError) as err:  # the graph builder says so: `check` rejects it too
        build_graph(parse_spec(text, file="t.yaml"))
    msg = one_line(err)
    assert msg.startswith("t.yaml:") and "'delta2' (residual) has several conditioners it could refine (gamma2, delta1)" in msg


def test_elbo_equals_pyro_trace_elbo_in_float64(flows):
    """Residual and spline transforms are deterministic sites: the loss is Pyro's."""
    program = compiled(flows.sere_maf).eval()
    x = data(flows)
    for elbo, analytic in [(pyro.infer.TraceMeanField_ELBO(), True), (pyro.infer.Trace_ELBO(), False)]:
        pyro.set_rng_seed(3)
        expected = elbo.differentiable_loss(program.model, program.guide, x, 0.4)
        pyro.set_rng_seed(3)
        torch.testing.assert_close(loss(elbo_terms(program, x, analytic), 0.4), expected, rtol=1e-12, atol=0)


def test_spline_couplings_are_shared_between_model_and_guide(flows):
    program = compiled(flows.sere_maf).eval()
    x = data(flows)
    guide = poutine.trace(program.guide).get_trace(x)
    model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x)
    eps1 = guide.nodes["eps1"]["value"]
    z1 = guide.nodes["z1"]["value"]  # computed by the guide: eps2's factor reads z1
    torch.testing.assert_close(z1, program.sites["z1"].condition(None)(eps1), rtol=0, atol=0)
    assert torch.equal(model.nodes["z1"]["value"], z1)
    # the only spline modules are the model's; the guide holds none
    assert not any(isinstance(m, SplineCoupling) for m in program.factors.modules())
    assert {id(p) for p in program.sites["z1"].parameters()}.isdisjoint(id(p) for p in program.factors.parameters())
    # the guide's term for eps2 reaches z1's spline parameters (self-reflection)
    (-elbo_terms(program, x).kl["eps2"].sum()).backward()
    grads = [p.grad for p in program.sites["z1"].parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0


def test_every_parameter_of_the_flow_model_gets_a_gradient(flows):
    program = compiled(flows.sere_maf, torch.float32)
    loss(elbo_terms(program, data(flows, 8, torch.float32)), 0.5).backward()
    missing = [n for n, p in program.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


def _conditioner_offsets(graph, name):
    offsets, start = {}, 0
    for p in graph.nodes[name].conditioners:
        offsets[p] = (start, start + graph.nodes[p].dim)
        start += graph.nodes[p].dim
    return offsets


# the shipped spec with networks shrunk, and without what another branch compiles (resnet
# evidence encoders, the guide's `residual` option)
SHRUNK = ["networks.evidence={mlp: [8], out: 8}", "networks.made={mlp: [4]}", "networks.base={mlp: [8]}",
          "networks.spline={mlp: [4], activation: tanh, out_activation: tanh}",
          "networks.gauss={mlp: [8], separate: true}", "networks.prior={mlp: [8], separate: true}",
          "model.1.x.options.base_hidden=[4]"]


@pytest.mark.parametrize("name", ["sere_maf_cifar10", "sere_maf_cifar10_faithful"])
def test_shipped_sere_maf_context_slices_follow_the_conditioner_order(name):
    """base reads gamma5 (the first 300 features), MADE l of each flow reads z(l)."""
    graph = load_graph(SPECS / f"{name}.yaml", [*SHRUNK, "guide.0.factors.eps(l).options={}"])
    offsets = _conditioner_offsets(graph, "x")
    assert list(offsets)[0] == "gamma5" and graph.nodes["gamma5"].dim == 300
    program = build_program(graph)
    maf = program.sites["x"]
    assert maf.context_features == 500 and maf.base_features == 300 and offsets["gamma5"] == (0, 300)
    assert maf.made_slices == [offsets[f"z{l}"] for l in range(1, 6)]
    assert program.graph.nodes["gamma1"].applied_to is None
    assert all(program.graph.nodes[f"gamma{l}"].applied_to == f"gamma{l - 1}" for l in range(2, 6))
    # what MADE 3 of each flow is bound to in the compiled distribution is z3's value
    ctx = torch.randn(2, 500)
    bound = [c for module, c in maf.condition(ctx).steps if module in maf.steps and hasattr(module, "made")]
    assert len(bound) == 10
    lo, hi = offsets["z3"]
    assert torch.equal(bound[2], ctx[:, lo:hi]) and torch.equal(bound[7], ctx[:, lo:hi])


def test_maf_context_wiring_reaches_the_right_mades(flows):
    """Changing z(l) in the context changes MADE l's outputs only (tiny spec, 2 MADEs per flow)."""
    # Glorot MADE outputs: identity-initialised MADEs output 0 whatever their context
    program = compiled(flows.sere_maf, overrides=["model.1.x.options.identity_init=false"]).eval()
    maf = program.sites["x"]
    offsets = _conditioner_offsets(program.graph, "x")
    x = data(flows, 3)
    ctx = torch.randn(3, maf.context_features, dtype=torch.float64)

    def made_outputs(c):
        return [m.made(x, cc) for m, cc in maf.condition(c).steps if hasattr(m, "made")]

    before = made_outputs(ctx)
    for l, changed in [(1, {0, 2}), (2, {1, 3})]:
        other = ctx.clone()
        lo, hi = offsets[f"z{l}"]
        other[:, lo:hi] += 1.0
        after = made_outputs(other)
        assert {k for k in range(4) if not torch.equal(before[k], after[k])} == changed


def test_shipped_maf_has_no_guide_and_its_iw_is_the_exact_likelihood(flows):
    graph = load_graph(SPECS / "maf_cifar10.yaml", ["model.0.x.net.mlp=[4]", "model.0.x.options.base_hidden=[4]"])
    program = build_program(graph)
    assert not program.factors and program.latents == [] and graph.nodes["x"].dim == 3072
    from hiervae.evaluation.iw import iw_log_likelihood

    program = compiled(flows.maf).eval()
    x = data(flows, 7)
    exact = program.sites["x"].condition(None).log_prob(x)
    for k in (1, 5):
        torch.testing.assert_close(iw_log_likelihood(program, x, k, chunk=2), exact, rtol=1e-12, atol=1e-12)
    terms = elbo_terms(program, x)
    assert terms.kl == {} and torch.equal(terms.elbo, terms.log_likelihood)
    torch.testing.assert_close(terms.log_likelihood, exact, rtol=0, atol=0)
