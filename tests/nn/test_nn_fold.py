"""Folding eval-mode BatchNorm into the following Linear: same outputs, originals restored."""

from __future__ import annotations

from pathlib import Path

import pyro
import pytest
import torch
from torch import nn

from hiervae.program import build_program
from hiervae.evaluation import inference_mode, log_weights
from hiervae.graph import load_graph
from hiervae.nn import MLP
from hiervae.nn.fold import fold_linear, folded_batch_norm

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _random_stats(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters on every BatchNorm1d."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in module.modules() if isinstance(m, nn.BatchNorm1d)):
            n = bn.num_features
            bn.running_mean.copy_(torch.randn(n, generator=g))
            bn.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            bn.weight.copy_(torch.randn(n, generator=g))
            bn.bias.copy_(torch.randn(n, generator=g))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fold_linear_equals_linear_of_eval_batch_norm(dtype):
    torch.manual_seed(0)
    bn, linear = nn.BatchNorm1d(7).to(dtype), nn.Linear(7, 5).to(dtype)
    _random_stats(bn)
    bn.eval()
    x = torch.randn(64, 7, dtype=dtype)
    folded = fold_linear(bn, linear)
    expected = linear(bn(x))
    torch.testing.assert_close(folded(x), expected, rtol=0, atol=TOL[dtype] * expected.abs().max().item())
    # independent closed form: y = W ((x - m) / sqrt(v + eps) * g + b) + c
    xn = (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(folded(x), xn @ linear.weight.T + linear.bias, rtol=0, atol=TOL[dtype] * 10)
    assert not any(p.requires_grad for p in folded.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_folded_mlp_equals_eval_mlp_and_is_restored_exactly(dtype):
    torch.manual_seed(1)
    mlp = MLP(12, [32, 16], 6, activation="relu", batch_norm=True).to(dtype)
    _random_stats(mlp, seed=1)
    mlp.eval()
    x = torch.randn(3, 40, 12, dtype=dtype)  # leading batch dims, as under the particle plate
    before_modules = list(mlp.net)
    before_state = {k: v.clone() for k, v in mlp.state_dict().items()}
    expected = mlp(x)
    with folded_batch_norm(mlp) as n:
        assert n == 3  # one BatchNorm at the input of each of the 3 linear layers
        assert not any(isinstance(m, nn.BatchNorm1d) for m in mlp.modules())
        got = mlp(x)
        with folded_batch_norm(mlp) as again:  # re-entering finds nothing left to fold
            assert again == 0
    torch.testing.assert_close(got, expected, rtol=0, atol=TOL[dtype] * expected.abs().max().item())
    assert list(mlp.net) == before_modules  # the very same module objects are back
    assert all(torch.equal(v, before_state[k]) for k, v in mlp.state_dict().items())
    assert torch.equal(mlp(x), expected)


def test_folding_does_not_touch_the_random_stream():
    """A seeded evaluation must draw the same particles whether or not it folds."""
    mlp = MLP(6, [16], 3, batch_norm=True).eval()
    torch.manual_seed(4)
    state = torch.get_rng_state()
    with folded_batch_norm(mlp) as n:
        assert n == 2
    assert torch.equal(torch.get_rng_state(), state)


def test_fold_refuses_training_mode_and_skips_what_is_not_foldable():
    mlp = MLP(4, [8], 2, batch_norm=True)
    with pytest.raises(ValueError, match="eval mode"):
        with folded_batch_norm(mlp):
            pass
    # no running statistics (batch statistics even in eval), and BatchNorm not followed by a Linear
    seq = nn.Sequential(nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    with folded_batch_norm(seq) as n:
        assert n == 0
        assert isinstance(seq[0], nn.BatchNorm1d) and isinstance(seq[2], nn.BatchNorm1d)
    with pytest.raises(ValueError):
        fold_linear(seq[0], seq[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_folded_program_gives_the_same_log_weights(dtype):
    """The whole compiled program (quickstart with batch norm everywhere): same noise, same log weights."""
    graph = load_graph(QUICKSTART, [f"networks.{n}.batch_norm=true" for n in ("evidence", "latent", "gauss", "decoder")])
    torch.manual_seed(0)
    program = build_program(graph).to(dtype)
    _random_stats(program, seed=2)
    n_bn = sum(isinstance(m, nn.BatchNorm1d) for m in program.modules())
    x = torch.bernoulli(torch.full((9, 64), 0.4, dtype=dtype))
    with inference_mode(program, fold=False):
        assert sum(isinstance(m, nn.BatchNorm1d) for m in program.modules()) == n_bn
        pyro.set_rng_seed(3)
        plain = log_weights(program, x, 17)
    pyro.set_rng_seed(3)  # seeded before folding: folding must not move the random stream
    with inference_mode(program):  # folds by default
        assert not any(isinstance(m, nn.BatchNorm1d) for m in program.modules())
        folded = log_weights(program, x, 17)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in program.modules()) == n_bn
    assert program.training  # build_program's default mode is restored
    assert plain.abs().max() > 1  # not trivially zero
    # log weights are sums of hundreds of terms: compare relative to their size
    torch.testing.assert_close(folded, plain, rtol=0, atol=TOL[dtype] * plain.abs().max().item())
