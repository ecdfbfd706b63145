"""Check what you compile: Pyro's own provenance tracking (``pyro.infer.inspect.get_dependencies``)
of ``program.model`` and ``program.guide`` shows that every site reads exactly its declared
inputs, on every shipped spec and on random ones -- so the checker's premise (a factor
reads its ``given`` and nothing else) is tested on the compiled program, not assumed.

Two limits of the tool, stated where they apply: Pyro lists no observed site among a
model site's prior dependencies (the data enter the guide through sample sites of a
wrapper, so there they are tracked), and nflows' coupling layers write their output in
place, which drops the provenance of their conditioners: through a ``spline_coupling``
the tool sees the bijective input only, so there the test asserts the range between
that and the declared inputs."""

from __future__ import annotations

import random
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from oracle.random_specs import random_spec
from pyro.infer.inspect import get_dependencies

from hiervae.graph import build_graph, load_graph
from hiervae.graph.ir import TRANSFORM, ModelGraph
from hiervae.language import load_spec, parse_spec
from hiervae.program import build_program

SPECS = Path(__file__).resolve().parents[2] / "specs"
BATCH = 2


def sources(graph: ModelGraph, names, as_tracked: bool = False) -> set[str]:
    """The sample sites (latent and observed nodes) the values of ``names`` are computed from;
    ``as_tracked``: what provenance can see through an nflows coupling (its input only)."""
    out: set[str] = set()
    for name in names:
        if name in graph.features:  # a guide feature: computed from its given
            out |= sources(graph, graph.features[name].given, as_tracked)
            continue
        node = graph.nodes[name]
        if node.kind != TRANSFORM:
            out.add(name)
        elif as_tracked and node.family == "spline_coupling":
            out |= sources(graph, [node.bijective_input], as_tracked)
        else:
            out |= sources(graph, node.parents, as_tracked)
    return out


def assert_reads(deps: set[str], graph: ModelGraph, inputs, drop=frozenset(), where=()) -> None:
    declared = sources(graph, inputs) - drop
    assert sources(graph, inputs, as_tracked=True) - drop <= deps <= declared, (*where, sorted(deps), sorted(declared))


def _data_sites(graph: ModelGraph) -> dict[str, torch.Tensor]:
    """Every observed node drawn as a latent sample site, so that provenance follows the data."""
    values = {}
    for name in graph.observed:
        shape = (BATCH, graph.nodes[name].dim)
        values[name] = pyro.sample(f"{name}__data", dist.Uniform(torch.zeros(shape), 1.0).to_event(2))
    return values


def _dependencies(graph: ModelGraph, program, which: str) -> dict[str, set[str]]:
    def wrapped():
        data = _data_sites(graph)
        binary = graph.data.binarize != "none"
        x = {o: v.clamp(0.01, 0.99).round() if binary else v * 0.9 for o, v in data.items()}
        return getattr(program, which)(x)

    deps = get_dependencies(wrapped)["prior_dependencies"]
    rename = {f"{o}__data": o for o in graph.observed}
    return {site: {rename.get(u, u) for u in ups} - {site} for site, ups in deps.items() if site not in rename}


def assert_reads_exactly_the_declared_inputs(graph: ModelGraph) -> None:
    torch.manual_seed(0)
    program = build_program(graph).eval()
    with pyro.validation_enabled(False):
        model, guide = _dependencies(graph, program, "model"), _dependencies(graph, program, "guide")
    observed = frozenset(graph.observed)
    for name, node in graph.nodes.items():
        if node.kind != TRANSFORM:
            assert_reads(model[name], graph, node.parents, observed, (graph.name, "model", name))
    for factor in graph.guide:
        assert_reads(guide[factor.latent], graph, factor.given, where=(graph.name, "guide", factor.latent))
    assert set(guide) == {f.latent for f in graph.guide}


def _shrunk(name: str) -> list[str]:
    doc = load_spec(SPECS / f"{name}.yaml").data  # the merged document (extends resolved)
    out = ["vars.L=3"] if "L" in doc.get("vars", {}) else []
    for key, net in doc.get("networks", {}).items():
        out.append(f"networks.{key}.{'resnet' if 'resnet' in net else 'mlp'}=[{'2, 2' if 'resnet' in net else '4'}]")
    if "maf" in name:
        out += ["model.1.x.options.mades_per_flow=3", "model.1.x.options.flows=1"] if "sere" in name else \
               ["model.0.x.net.mlp=[4]", "model.0.x.options.flows=1"]
    return out


@pytest.mark.parametrize("name", sorted(p.stem for p in SPECS.glob("*.yaml")))
def test_every_shipped_site_reads_exactly_its_declared_inputs(name):
    assert_reads_exactly_the_declared_inputs(load_graph(SPECS / f"{name}.yaml", _shrunk(name)))


def test_random_specs_read_exactly_their_declared_inputs():
    rnd = random.Random(11)
    omitting_data = 0
    reading_features = two_observed = 0
    for i in range(60):
        graph = build_graph(parse_spec(random_spec(rnd, observed_max=1 + i % 2, features=i % 3 > 0)))
        assert_reads_exactly_the_declared_inputs(graph)
        omitting_data += sum(not set(graph.observed) <= set(f.given) for f in graph.guide)
        reading_features += sum(bool(set(f.given) & set(graph.features)) for f in graph.guide)
        two_observed += len(graph.observed) == 2
    assert omitting_data >= 20  # factors that do not read the data are among them
    assert reading_features >= 10 and two_observed >= 3  # and guide features, and models observing two nodes


def test_the_provenance_test_sees_a_factor_that_reads_less_or_more():
    """Guard against a vacuous pass: a compiled factor that does not read what its ``given``
    says, or reads more, is caught."""
    graph = load_graph(SPECS / "quickstart.yaml")
    program = build_program(graph)
    with pyro.validation_enabled(False):
        deps = _dependencies(graph, program, "guide")
    assert deps["eps2"] == {"x", "eps1"}
    program.factors["eps2"].inputs = ["x", "x"]  # reads x twice, no longer z1 (the family is rebuilt to fit)
    program.factors["eps2"].encoders["x"] = torch.nn.Identity()
    program.factors["eps2"].family = type(program.factors["eps2"].family)(4, 128)
    with pyro.validation_enabled(False):
        deps = _dependencies(graph, program, "guide")
    assert deps["eps2"] == {"x"}
    with pytest.raises(AssertionError):
        assert_reads(deps["eps2"], graph, graph.factor("eps2").given)
