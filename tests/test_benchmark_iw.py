"""The IW benchmark's hand-written IW computes hiervae's IW estimate (same particles, float64).

``benchmarks/iw_speed.py`` times hiervae's ``iw_log_likelihood`` against
``reference_iw`` on the reference network; the ratio only means something if both
compute the same number.  With hiervae's weights (and non-trivial batch-norm statistics)
copied into the reference and the same seed, they must agree to float64 round-off,
with BatchNorm folded on both sides or on neither.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pyro
import pytest
import torch

from hiervae.program import build_program
from hiervae.evaluation import iw_log_likelihood
from hiervae.graph import load_graph
from hiervae.nn.fold import folded_batch_norm

ROOT = Path(__file__).resolve().parents[1]


def _iw_speed_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("iw_speed", ROOT / "benchmarks" / "iw_speed.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.parametrize("fold", [False, True])
def test_benchmark_reference_iw_equals_hiervae_iw(fold):
    bench = _iw_speed_module()
    torch.manual_seed(0)
    program = build_program(load_graph(ROOT / "specs" / "sere_mlp_mnist.yaml")).double().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in (m for m in program.modules() if isinstance(m, torch.nn.BatchNorm1d)):
            bn.running_mean.copy_(0.3 * torch.randn(bn.num_features, generator=g, dtype=torch.float64))
            bn.running_var.copy_(0.5 + torch.rand(bn.num_features, generator=g, dtype=torch.float64))
    ref = bench.load_from_program(program).eval()
    x = torch.bernoulli(torch.full((4, 784), 0.3, dtype=torch.float64), generator=g)
    pyro.set_rng_seed(7)
    ours = iw_log_likelihood(program, x, samples=6, chunk=4, fold=fold)
    pyro.set_rng_seed(7)
    with (folded_batch_norm(ref) if fold else torch.no_grad()):
        theirs = bench.reference_iw(ref, x, 6, 4)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-9)
    pyro.set_rng_seed(8)  # other particles, another estimate: the agreement is not vacuous
    assert not torch.allclose(bench.reference_iw(ref, x, 6, 4), theirs, atol=1e-6)
