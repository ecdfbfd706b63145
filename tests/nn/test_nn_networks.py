"""Networks are one typed value: every written key is read by what it builds, and every
network (of every kind, in every shipped spec) returns float32 under bf16."""

from pathlib import Path

import pytest
import torch
from examples import random_observations

from hiervae.errors import SpecError
from hiervae.graph import build_graph, load_graph
from hiervae.language import load_spec, parse_spec
from hiervae.nn.precision import network_precision
from hiervae.policy import select_analytic_kl
from hiervae.program import build_program, elbo_terms
from hiervae.program.program import Program

SPECS = Path(__file__).resolve().parents[2] / "specs"
QUICKSTART = (SPECS / "quickstart.yaml").read_text()


def _error(text: str, one_line) -> str:
    with pytest.raises(SpecError) as err:
        build_graph(parse_spec(text, file="q.yaml"))
    return one_line(err)


@pytest.mark.parametrize("old, new, message", [
    # the example: an mlp decoder with an encoder's `out` and two resnet keys
    ("decoder:  {mlp: [128], activation: relu}", "decoder:  {mlp: [8], out: 7, kernel: 5, scale: down}",
     r"q.yaml:\d+: networks\.decoder\.kernel: bernoulli: 'kernel' does not apply to an mlp network \(it is a resnet key\)"),
    ("decoder:  {mlp: [128], activation: relu}", "decoder:  {mlp: [8], out: 7}",
     r"q.yaml:\d+: networks\.decoder\.out: 'out' is not read here .*no other use of template 'decoder' reads it"),
    ("net: decoder}", "net: {mlp: [8], separate: false}}",
     r"q.yaml:\d+: model\[1\]\.x\.net\.separate: bernoulli: 'separate' is not read here"),
    ("gauss:    {mlp: [64], activation: relu}", "gauss:    {mlp: [64], activation: relu, out: 3}",
     r"q.yaml:\d+: networks\.gauss\.out: 'out' is not read here"),
    ("evidence: {mlp: [64], activation: relu, out: 16}", "evidence: {mlp: [64], activation: relu, out: 16, separate: true}",
     r"q.yaml:\d+: networks\.evidence\.separate: 'separate' is not read here"),
    ("bij:      {mlp: [16], activation: tanh, out_activation: tanh}", "bij:      {resnet: [4], activation: tanh}",
     r"q.yaml:\d+: networks\.bij\.resnet: affine_lowrank: a resnet network cannot be used here \(accepted: mlp\)"),
    ("activation: tanh, out_activation: tanh}", "activation: tanh, out_activation: tnah}",
     r"q.yaml:\d+: networks\.bij\.out_activation: unknown activation 'tnah' \(known: .*tanh"),
    ("dist: normal, given: [z(l-1)], net: gauss}", "dist: std_normal, net: gauss}",
     r"q.yaml:\d+: model\[0\]\.nodes\.eps\(l\)\.net \(l=1\): std_normal has no network"),
])
def test_a_network_key_nothing_reads_is_an_error_at_its_line(old, new, message, one_line):
    assert old in QUICKSTART
    import re

    assert re.search(message, _error(QUICKSTART.replace(old, new), one_line))


def test_a_template_key_read_by_one_use_is_fine():
    """``separate`` of a template shared by a bijector (reads it) and a residual node (does not)."""
    text = QUICKSTART.replace("bij:      {mlp: [16], activation: tanh, out_activation: tanh}",
                              "bij:      {mlp: [16], activation: tanh, out_activation: tanh, separate: false}")
    text = text.replace("  - x: {observed: [64], dist: bernoulli, given: [z(L)], net: decoder}",
                        "  - h: {transform: residual, dim: 4, given: [z(L)], net: bij}\n"
                        "  - x: {observed: [64], dist: bernoulli, given: [h], net: decoder}")
    graph = build_graph(parse_spec(text))
    program = build_program(graph)
    assert len(program.sites["z1"].nets) == 1  # separate: false reached the bijector


SHIPPED = sorted(p.stem for p in SPECS.glob("*.yaml"))


def _shrunk(name: str) -> list[str]:

    doc = load_spec(SPECS / f"{name}.yaml").data  # the merged document (extends resolved)
    out = ["vars.L=2"] if "L" in doc.get("vars", {}) else []
    for key, net in doc.get("networks", {}).items():
        out.append(f"networks.{key}.{'resnet' if 'resnet' in net else 'mlp'}=[{'4, 4' if 'resnet' in net else '8'}]")
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_keeps_its_objective_float32_under_bf16(name):
    inline_flow = ["model.0.x.net.mlp=[16]"] if name == "maf_cifar10" else []  # its MADEs' net is written inline
    graph = load_graph(SPECS / f"{name}.yaml", _shrunk(name) + inline_flow)
    torch.manual_seed(0)
    program: Program = build_program(graph)
    x = random_observations(graph, 3, dtype=torch.float32)
    with network_precision(program, "bf16", "cpu"):
        terms = elbo_terms(program, x, select_analytic_kl(graph))
    assert terms.log_likelihood.dtype == torch.float32
    assert all(k.dtype == torch.float32 for k in terms.kl.values())
