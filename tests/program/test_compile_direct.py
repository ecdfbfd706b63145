"""The direct (Pyro-free) evaluation equals the Pyro program it is the fast path of.

For every MLP-family spec (shrunk with ``--set``-style overrides), in float64 with the
same seed: the ELBO terms of :func:`elbo_terms` (direct) equal those computed from a
Pyro trace of ``program.guide`` and a replay of ``program.model`` (written out here,
with ``kl_divergence``, as the objective was before the direct path); the loss and
every gradient equal Pyro's own ``TraceMeanField_ELBO`` / ``Trace_ELBO``
``differentiable_loss``; and the IW log-weights equal those of the traced program under
a particle plate.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyro
import pytest
import torch
from examples import random_observations
from pyro import poutine
from torch.distributions import kl_divergence

from hiervae.data.observations import Observations
from hiervae.evaluation import inference_mode, log_weights
from hiervae.graph import load_graph
from hiervae.language import load_spec
from hiervae.policy import select_analytic_kl
from hiervae.program import build_program, elbo_terms, loss
from hiervae.program.kl import ClosedFormKL, monte_carlo_kl
from hiervae.program.sites import DirectSites, PyroSites, noise_source

SPECS = Path(__file__).resolve().parents[2] / "specs"
MLP_SPECS = ["quickstart", "sere_mlp_mnist", "sere_mlp_mnist_faithful", "dlgm_mnist", "ladder_mnist",
             "iaf_mnist", "sere_iaf_mnist", "sere_iaf_mnist_faithful", "cvae_mnist", "vae_gaussian_mnist",
             "own_data_mixture"]


def small(name: str) -> list[str]:
    """Overrides: 3 layers where the spec has ``vars.L``, every shared network 1 x 24 units."""
    doc = load_spec(SPECS / f"{name}.yaml").data  # the merged document (extends resolved)
    out = [f"networks.{k}.mlp=[24]" for k in doc.get("networks", {})]
    return out + (["vars.L=3"] if "L" in doc.get("vars", {}) else [])


def make(name: str):
    graph = load_graph(SPECS / f"{name}.yaml", small(name))
    torch.manual_seed(0)
    program = build_program(graph).to(torch.float64)
    return graph, program, observations(graph, 5)


def observations(graph, n: int) -> Observations:
    return random_observations(graph, n)


def traced_terms(program, x, analytic: bool):
    """ELBO terms from a Pyro trace of the guide and a replay of the model (no reuse)."""
    guide = poutine.trace(program.guide).get_trace(x)
    model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x)
    kl = {}
    for name in program.latents:
        q, p, v = guide.nodes[name]["fn"], model.nodes[name]["fn"], guide.nodes[name]["value"]
        try:
            kl[name] = kl_divergence(q, p) if analytic else q.log_prob(v) - p.log_prob(v)
        except NotImplementedError:
            kl[name] = q.log_prob(v) - p.log_prob(v)
    ll = sum(model.nodes[o]["fn"].log_prob(model.nodes[o]["value"]) for o in program.observed)
    return ll, kl, guide, model


def grads(program):
    return {n: p.grad.clone() for n, p in program.named_parameters() if p.grad is not None}


def assert_same_grads(a: dict, b: dict):
    assert a.keys() == b.keys()
    scale = max(g.abs().max().item() for g in a.values())
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-9, atol=1e-12 * scale, msg=n)


@pytest.mark.parametrize("name", MLP_SPECS)
def test_direct_path_equals_the_pyro_program(name):
    graph, program, x = make(name)
    checked = select_analytic_kl(graph)
    program.train()
    pairs = [(False, pyro.infer.Trace_ELBO())] + ([(True, pyro.infer.TraceMeanField_ELBO())] if checked else [])
    for analytic, elbo in pairs:
        beta = torch.tensor(0.37, dtype=torch.float64)
        # terms: direct == traced guide + replayed model
        pyro.set_rng_seed(3)
        terms = elbo_terms(program, x, analytic)
        pyro.set_rng_seed(3)
        with torch.no_grad():
            ll, kl, guide, _ = traced_terms(program, x, analytic)
        torch.testing.assert_close(terms.log_likelihood, ll, rtol=1e-12, atol=1e-10)
        assert terms.kl.keys() == kl.keys()
        for k in kl:
            torch.testing.assert_close(terms.kl[k], kl[k], rtol=1e-12, atol=1e-10, msg=k)
        # loss and gradients == Pyro's differentiable_loss (analytic: TraceMeanField_ELBO)
        program.zero_grad()
        pyro.set_rng_seed(4)
        ours = loss(elbo_terms(program, x, analytic), beta)
        ours.backward()
        direct = grads(program)
        program.zero_grad()
        pyro.set_rng_seed(4)
        expected = elbo.differentiable_loss(program.model, program.guide, x, beta)
        expected.backward()
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)
        assert_same_grads(direct, grads(program))
        assert len(direct) == len(list(program.parameters()))


@pytest.mark.parametrize("name", MLP_SPECS)
def test_iw_log_weights_equal_the_traced_program(name):
    _, program, x = make(name)
    particles = 4
    with inference_mode(program):
        pyro.set_rng_seed(7)
        ours = log_weights(program, x, particles)
        pyro.set_rng_seed(7)
        with pyro.plate("particles", particles, dim=-2):
            guide = poutine.trace(program.guide).get_trace(x)
            model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x)
    guide.compute_log_prob()
    model.compute_log_prob()
    shape = (particles, x.size)

    def total(trace, names):
        return sum(trace.nodes[n]["log_prob"].expand(shape) for n in names)

    expected = total(model, [*program.latents, *program.observed]) - total(guide, program.latents)
    assert ours.shape == shape
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-9)
    # the evidence encoders of x saw (B, D), the latent networks (particles, B, .)
    assert guide.nodes[program.latents[-1]]["value"].shape[:2] == shape


def test_kl_functions_are_resolved_once_from_the_families():
    _, program, x = make("sere_mlp_mnist")
    plan = program.kl_functions(True)
    assert program.kl_functions(True) is plan  # cached per program
    assert all(isinstance(f, ClosedFormKL) and f.event_dims == 1 for f in plan.values())
    assert set(program.kl_functions(False).values()) == {monte_carlo_kl}
    _, iaf, _ = make("sere_iaf_mnist")
    assert set(iaf.kl_functions(True).values()) == {monte_carlo_kl}  # IAF: no closed form
    # the probe leaves no trace: the RNG state and the training flag are as before
    _, fresh, _ = make("quickstart")
    fresh.train()
    state = torch.get_rng_state()
    fresh.kl_functions(True)
    assert fresh.training and torch.equal(state, torch.get_rng_state())


def test_the_direct_walk_records_every_site_and_reuses_transforms():
    _, program, x = make("sere_mlp_mnist_faithful")
    guide, model = program.walk(x)
    assert set(guide.dists) == set(program.latents)
    assert set(model.dists) == {*program.latents, *program.observed}
    for name in program.graph.transforms[:-1]:  # the guide needs z1..z(L-1): the model takes them
        assert model.values[name] is guide.values[name]
    with inference_mode(program):
        guide, model = program.walk(x, particles=3)
    for name in program.latents:
        assert guide.values[name].shape == (3, 5, program.graph.nodes[name].dim)
        assert guide.dists[name].batch_shape == model.dists[name].batch_shape == (3, 5)


def test_noise_source_replaces_the_draw_of_the_direct_path():
    _, program, x = make("quickstart")
    seen = []

    def zeros(fn):
        seen.append(tuple(fn.batch_shape))
        return fn.mean
    with noise_source(zeros):
        guide, _ = program.walk(x)
    assert seen == [(5,)] * len(program.latents)
    for name in program.latents:
        torch.testing.assert_close(guide.values[name], guide.dists[name].mean)


def test_site_handlers_have_the_same_interface():
    methods = {"plate", "sample", "observe", "deterministic"}
    for cls in (PyroSites, DirectSites):
        assert methods <= set(dir(cls))


TINY_MAF = """
name: tiny-maf
model:
  - z: {latent: 4, dist: normal}
  - x: {observed: [64], dist: maf, given: [z], net: {mlp: [70]}, options: {flows: 1, mades_per_flow: 2, base: normal, base_hidden: [8]}}
guide:
  - z: {dist: normal, given: [x], encoders: {x: {mlp: [16], out: 8}}, net: {mlp: [16]}}
"""


def test_a_flow_likelihood_goes_through_the_same_walk():
    """No MLP special case: a MAF likelihood's log_prob (a flow density) is scored by the same walk."""
    from hiervae.graph import build_graph
    from hiervae.language import parse_spec

    program = build_program(build_graph(parse_spec(TINY_MAF, file="maf.yaml"))).to(torch.float64)
    x = torch.rand(3, 64, generator=torch.Generator().manual_seed(0)).to(torch.float64)
    pyro.set_rng_seed(0)
    ours = loss(elbo_terms(program, x, True), 0.5)
    pyro.set_rng_seed(0)
    expected = pyro.infer.TraceMeanField_ELBO().differentiable_loss(program.model, program.guide, x, 0.5)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)


def test_a_guide_feature_is_computed_once_per_pass_and_a_shared_network_is_one_module():
    """The ladder's bottom-up pass runs once per walk however many factors read it (also
    under IW particles, at the data's shape), and a shared template is one module: the same
    object at every use, its parameters counted once, its gradient the sum of its uses."""
    text = (SPECS / "ladder_mnist.yaml").read_text()
    graph = load_graph(SPECS / "ladder_mnist.yaml", small("ladder_mnist"))
    torch.manual_seed(0)
    program = build_program(graph).double()
    calls = {name: [] for name in graph.features}
    for name, module in program.features.items():
        module.register_forward_hook(lambda m, i, o, name=name: calls[name].append(tuple(o.shape)))
    x = observations(graph, 5)
    program.walk(x)
    assert all(c == [(5, graph.features[n].dim)] for n, c in calls.items()), calls
    with inference_mode(program):
        program.walk(x, particles=3)
    assert all(c[-1] == (5, graph.features[n].dim) for n, c in calls.items())  # x alone: computed once, not per particle
    assert "d1" in text and not graph.features["d1"].net.shared

    shared = text.replace("  up:       {activation: relu, batch_norm: true}", "  up:       {mlp: [24], activation: relu, shared: true}")
    shared = shared.replace("d2: {feature: 256, given: [d1], net: {extends: up, mlp: [256]}}", "d2: {feature: 512, given: [d1], net: up}")
    shared = shared.replace("d3: {feature: 128, given: [d2], net: {extends: up, mlp: [128]}}", "d3: {feature: 512, given: [d2], net: up}")
    from hiervae.graph import build_graph
    from hiervae.language import parse_spec

    g = build_graph(parse_spec(shared, file="ladder.yaml"))
    p = build_program(g)
    assert p.features["d2"] is p.features["d3"] is p.shared["up"]
    copies = build_program(build_graph(parse_spec(shared.replace(", shared: true", ""), file="ladder.yaml")))
    one = sum(t.numel() for t in p.shared["up"].parameters())
    assert sum(t.numel() for t in copies.parameters()) - sum(t.numel() for t in p.parameters()) == one
    p.double()
    loss(elbo_terms(p, observations(g, 5), True), torch.tensor(1.0, dtype=torch.float64)).backward()
    grad = p.shared["up"].net[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("change, message", [
    (("d3: {feature: 128, given: [d2], net: {extends: up, mlp: [128]}}", "d3: {feature: 128, given: [d2], net: up}"),
     r"shared network 'up' is one module: feature d2 gives it input \[512\] and 512 outputs, feature d3 input \[512\] and 128 outputs"),
    (("  gauss:    {mlp: [256, 256], activation: relu, batch_norm: true}", "  gauss:    {mlp: [256, 256], activation: relu, shared: true}"),
     r"shared network 'gauss': a normal builds its output heads per node"),
])
def test_a_shared_network_has_one_shape_and_is_a_whole_module(change, message, one_line):
    from hiervae.errors import SpecError
    from hiervae.graph import build_graph
    from hiervae.language import parse_spec

    text = (SPECS / "ladder_mnist.yaml").read_text()
    text = text.replace("  up:       {activation: relu, batch_norm: true}", "  up:       {mlp: [24], activation: relu, shared: true}")
    text = text.replace("d2: {feature: 256, given: [d1], net: {extends: up, mlp: [256]}}", "d2: {feature: 512, given: [d1], net: up}")
    with pytest.raises(SpecError) as err:
        build_graph(parse_spec(text.replace(*change), file="ladder.yaml"))
    assert re.search(message, one_line(err)), one_line(err)
