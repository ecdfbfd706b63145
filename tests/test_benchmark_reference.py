"""The speed benchmark's hand-written reference is the same network as hiervae's program.

``benchmarks/reference_sere_vae.py`` re-implements the MLP SeRe-VAE of
``specs/sere_mlp_mnist.yaml`` in plain PyTorch.  With hiervae's initial weights copied
in (``load_from_program``) and the same noise, it must compute hiervae's training loss
(and gradients) to float64 round-off; otherwise ``benchmarks/train_speed.py`` would not
compare like with like.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine

from hiervae.program import build_program, elbo_terms, loss
from hiervae.graph import load_graph

ROOT = Path(__file__).resolve().parents[1]


def _reference_module():
    spec = importlib.util.spec_from_file_location("reference_sere_vae", ROOT / "benchmarks" / "reference_sere_vae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref_mod = _reference_module()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # float64 on a shared machine: one intra-op thread is both faster and steadier here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    program = build_program(load_graph(ROOT / "specs" / "sere_mlp_mnist.yaml", [])).to(torch.float64)
    reference = ref_mod.load_from_program(program)
    g = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.rand(16, 784, generator=g)).to(torch.float64)
    return program, reference, x


def test_same_architecture_and_parameter_count(pair):
    program, reference, _ = pair
    count = ref_mod.count_parameters
    assert count(reference) == count(program) == 7_048_692
    # same multiset of parameter shapes, same batch-norm buffers
    shapes = lambda m: sorted(tuple(p.shape) for p in m.parameters())  # noqa: E731
    assert shapes(reference) == shapes(program)
    bn = lambda m: sum(isinstance(x, torch.nn.BatchNorm1d) for x in m.modules())  # noqa: E731
    assert bn(reference) == bn(program)


def test_loading_copies_every_tensor(pair):
    program, reference, _ = pair
    pairs = ref_mod.parameter_pairs(program, reference)
    # a bijection between the parameters, equal values (biases start at zero: check weights too)
    assert len({id(a) for a, _ in pairs}) == len(list(reference.parameters()))
    assert len({id(b) for _, b in pairs}) == len(list(program.parameters()))
    for a, b in pairs:
        assert a.shape == b.shape or a.numel() == b.numel()
        assert torch.equal(a.detach().flatten(), b.detach().flatten())


@pytest.mark.parametrize("training, beta", [(True, 0.37), (False, 1.0)])
def test_same_loss_and_gradients_with_the_same_noise(pair, training, beta):
    program, reference, x = pair
    ref_mod.load_from_program(program, reference)  # re-sync batch-norm running statistics
    program.train(training)
    reference.train(training)
    program.zero_grad()
    reference.zero_grad()

    # Same seed: the guide draws eps(1..L) in the same order and shapes as the reference.
    with torch.no_grad():
        pyro.set_rng_seed(123)
        guide = poutine.trace(program.guide).get_trace(x)
        model = poutine.trace(poutine.replay(program.model, trace=guide)).get_trace(x)
        torch.manual_seed(123)
        noise = [torch.randn(x.shape[0], reference.dim, dtype=x.dtype) for _ in range(reference.L)]
        log_lik, kls, eps, zs = reference.terms(x, noise)
    pyro.set_rng_seed(123)
    terms = elbo_terms(program, x)
    expected = loss(terms, torch.tensor(beta, dtype=torch.float64))
    expected.backward()

    for l in range(reference.L):  # fixed noise: the guide's samples and the shared transforms
        torch.testing.assert_close(eps[l], guide.nodes[f"eps{l + 1}"]["value"], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(zs[l], model.nodes[f"z{l + 1}"]["value"], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(kls[l], terms.kl[f"eps{l + 1}"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(log_lik, terms.log_likelihood, rtol=1e-10, atol=1e-10)

    torch.manual_seed(123)  # default path: randn_like in the same order
    ours = reference(x, torch.tensor(beta, dtype=torch.float64))
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=0)
    ours.backward()

    pairs = ref_mod.parameter_pairs(program, reference)
    assert len(pairs) == len(list(program.parameters())) == len({id(b) for _, b in pairs})
    scale = max(b.grad.abs().max().item() for _, b in pairs)
    for a, b in pairs:
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-11 * scale)
