"""The ResNet SeRe-VAE specs compile: conv encoders/decoder, residual layers, IW, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pyro
import pytest
import torch

from hiervae.errors import SpecError
from hiervae.evaluation.iw import iw_log_likelihood
from hiervae.graph import build_graph, load_graph
from hiervae.language import parse_spec
from hiervae.nn import EvidenceResidualNet
from hiervae.nn.networks.resnet import ResNetDecoder, ResNetEncoder
from hiervae.program import build_program, elbo_terms, loss

SPECS = Path(__file__).resolve().parents[2] / "specs"
RESNET_SPECS = ["sere_resnet_mnist", "sere_resnet_mnist_faithful"]
# the paper's networks shrunk to 8x8 digits and 2 layers: same structure, a fraction of the cost
SMALL = ["vars.L=2", "data.dataset=digits", "data.validation=200", "model.1.x.observed=[1,8,8]",
         "networks.evidence.resnet=[4,8]", "networks.evidence.out=16", "networks.decoder.resnet=[8,4]",
         "networks.latent.mlp=[32]", "networks.gauss.mlp=[32]"]


def small_program(name: str, dtype=torch.float32):
    return build_program(load_graph(SPECS / f"{name}.yaml", SMALL)).to(dtype)


def digits_like(batch: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.rand(batch, 64, generator=g)).to(dtype)


@pytest.mark.parametrize("name", RESNET_SPECS)
def test_paper_networks_are_built(name):
    """Table 6 at full size: ResNet encoders of x, residual Gaussian layers whose evidence
    slice is x's 64 features (first in `given`), the transposed-convolution decoder."""
    program = build_program(load_graph(SPECS / f"{name}.yaml", ["vars.L=3"]))
    for l in (1, 2, 3):
        factor = program.factors[f"eps{l}"]
        encoder = factor.encoders["x"]
        assert isinstance(encoder, ResNetEncoder)
        assert encoder.map_shape == (32, 7, 7) and encoder.out_features == 64
        latent_features = 0 if l == 1 else 20 * (1 if name == "sere_resnet_mnist" else l - 1)  # each z encoded to 20
        for net in factor.family.nets:
            assert isinstance(net, EvidenceResidualNet)
            assert net.evidence == (0, 64) and net.context_features == 64 + latent_features
            assert (net.hidden is None) == (l == 1)
    decoder = program.sites["x"].net.net
    assert isinstance(decoder, ResNetDecoder) and decoder.start == (32, 7, 7) and decoder.context_features == 30


def test_evidence_slice_follows_given_order():
    text = (SPECS / "sere_resnet_mnist_faithful.yaml").read_text().replace("given: [x, z1..z(l-1)]", "given: [z1..z(l-1), x]")
    program = build_program(build_graph(parse_spec(text, file=str(SPECS / "f.yaml"), overrides=["vars.L=3"])))
    assert program.factors["eps3"].family.nets[0].evidence == (40, 104)  # after z1, z2 encoded to 20 each
    assert program.factors["eps1"].family.nets[0].evidence == (0, 64)


@pytest.mark.parametrize("name", RESNET_SPECS)
def test_every_parameter_gets_a_gradient(name):
    program = small_program(name)
    loss(elbo_terms(program, digits_like(6)), 0.5).backward()
    missing = [n for n, p in program.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing


@pytest.mark.parametrize("name", RESNET_SPECS)
def test_objective_equals_pyro_elbo_in_float64(name):
    program = small_program(name, torch.float64).eval()
    x = digits_like(5, torch.float64)
    pyro.set_rng_seed(3)
    expected = pyro.infer.TraceMeanField_ELBO().differentiable_loss(program.model, program.guide, x, 0.7)
    pyro.set_rng_seed(3)
    torch.testing.assert_close(loss(elbo_terms(program, x), 0.7), expected, rtol=1e-12, atol=0)


def test_iw_log_likelihood_is_finite_and_above_the_elbo():
    """IW with K particles (the encoders see (B, F), the decoder (K, B, F)) bounds log p(x)
    more tightly than the ELBO: on average it is at least the ELBO."""
    torch.manual_seed(0)
    program = small_program("sere_resnet_mnist_faithful")
    x = digits_like(16)
    iw = iw_log_likelihood(program, x, samples=200, chunk=50)
    program.eval()
    with torch.no_grad():
        pyro.set_rng_seed(1)
        elbo = torch.stack([elbo_terms(program, x).elbo for _ in range(20)]).mean(0)
    assert iw.shape == (16,) and torch.isfinite(iw).all()
    assert iw.mean() >= elbo.mean()
    assert (iw < 0).all()  # log-probability of binary data


def _error(text: str, one_line, *overrides) -> str:
    with pytest.raises(SpecError) as err:
        build_program(build_graph(parse_spec(text, file="r.yaml", overrides=list(overrides))))
    return one_line(err)


@pytest.mark.parametrize("old, new, message", [
    ("encoders: {x: evidence, z(l-1): latent}", "encoders: {x: evidence, z(l-1): evidence}",
     r"r.yaml:\d+: guide\[0\]\.factors\.eps\(l\)\.encoders\.z\(l-1\) \(l=2\): encoder of z1: a resnet network maps an image to features .* here it would map \[10\] to \[64\]"),
    ("decoder:  {resnet: [32, 16], scale: up", "decoder:  {resnet: [32, 16], scale: down",
     r"r.yaml:\d+: .*bernoulli: a decoder cannot downsample"),
    ("gauss:    {mlp: [256, 256], activation: relu, separate: true}", "gauss:    {resnet: [8], activation: relu}",
     r"r.yaml:\d+: networks\.gauss\.resnet: normal: a resnet network cannot be used here \(accepted: mlp\)"),
    ("evidence: {resnet: [16, 32], scale: down, kernel: 3", "evidence: {resnet: [16, 32], scale: down, kernel: 4",
     r"r.yaml:\d+: guide.*encoder of x: kernel must be a positive odd size"),
    ("evidence: {resnet: [16, 32],", "evidence: {mlp: [8], resnet: [16, 32],",
     r"r.yaml:\d+: networks\.evidence\.resnet: a network is either convolutional \(resnet\) or an mlp, not both"),
    ("residual: true}", "residual: true, evidence: [0, 64]}",
     r"r.yaml:\d+: guide.*options\.evidence \(l=1\): normal: unknown option 'evidence' \(known: scale_map, variance_floor, sigma, residual\)"),
    ("given: [x, z(l-1)], encoders: {x: evidence, z(l-1): latent}", "given: [z(l-1)], encoders: {z(l-1): latent}",
     r"r.yaml:\d+: guide.*normal: residual: true needs evidence in the context"),
    ("eps(l): {latent: 10, dist: normal, given: [z(l-1)], net: gauss, options: {scale_map: softplus_elu}}",
     "eps(l): {latent: 10, dist: normal, given: [z(l-1)], net: gauss, options: {residual: true}}",
     r"r.yaml:\d+: model\[0\]\.nodes\.eps\(l\) \(l=1\): normal: residual: true needs evidence"),
])
def test_resnet_where_it_makes_no_sense_is_a_one_line_spec_error(old, new, message, one_line):
    text = (SPECS / "sere_resnet_mnist.yaml").read_text()
    assert old in text
    assert re.search(message, _error(text.replace(old, new), one_line, "vars.L=2"))


def test_resnet_networks_need_an_image_shaped_observation(one_line):
    text = (SPECS / "sere_resnet_mnist.yaml").read_text().replace("observed: [1, 28, 28]", "observed: [784]")
    message = _error(text, one_line, "vars.L=2")
    assert re.search(r"r.yaml:\d+: model\[1\]\.x: bernoulli: a resnet network maps an image to features .*"
                     r"here it would map \[20\] to \[784\]", message)
    text = text.replace("decoder:  {resnet: [32, 16], scale: up, kernel: 3,", "decoder:  {mlp: [64],")
    message = _error(text, one_line, "vars.L=2")
    assert "encoder of x: a resnet network maps an image to features" in message and "map [784] to [64]" in message
