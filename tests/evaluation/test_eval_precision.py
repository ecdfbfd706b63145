"""IW with the networks in bf16: close to float32, not equal (so bf16 really ran), float32 result."""

from __future__ import annotations

import pyro
import pytest
import torch

from hiervae.program import build_program
from hiervae.evaluation import iw_log_likelihood
from hiervae.graph import load_graph


def _eager_and(quickstart_path, samples: int, chunk: int, **variant):
    """The fp32 eager IW estimate and the ``variant``'s, same program, data and seed."""
    torch.manual_seed(0)
    program = build_program(load_graph(quickstart_path)).eval()
    x = torch.bernoulli(torch.full((30, 64), 0.4))
    out = []
    for options in ({}, variant):
        pyro.set_rng_seed(5)
        out.append(iw_log_likelihood(program, x, samples=samples, chunk=chunk, **options))
    return program, x, *out


def test_eval_bf16_iw_is_close_to_fp32(quickstart_path):
    program, x, fp32, bf16 = _eager_and(quickstart_path, 40, 20, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == (30,)
    assert not torch.equal(bf16, fp32)
    # the same particles up to bf16 round-off of the network outputs: well under a nat per point here
    assert (bf16 - fp32).abs().max() < 0.5 and (bf16 - fp32).mean().abs() < 0.1
    with pytest.raises(ValueError, match="precision"):
        iw_log_likelihood(program, x, samples=2, precision="fp16")


def test_eval_iw_makes_no_host_sync(quickstart_path, forbid_syncs):
    """The chunk loop of IW never waits for the device (a sync per chunk would serialise a GPU)."""
    graph = load_graph(quickstart_path, ["networks.gauss.batch_norm=true", "networks.decoder.batch_norm=true"])
    program = build_program(graph)
    x = torch.bernoulli(torch.full((8, 64), 0.4))
    assert pyro.poutine.util.is_validation_enabled()  # Pyro's default: IW turns it off itself
    forbid_syncs["on"] = True
    try:
        est = iw_log_likelihood(program, x, samples=30, chunk=7)
    finally:
        forbid_syncs["on"] = False
    assert torch.isfinite(est).all()


def test_eval_compiled_iw_is_the_eager_estimate(quickstart_path):
    """``compile=True`` runs each chunk through torch.compile: the same estimator and, on
    CPU, the same draws, so the estimate equals eager's to float round-off."""
    _, _, eager, compiled = _eager_and(quickstart_path, 60, 30, compile=True)
    assert compiled.shape == (30,) and torch.isfinite(compiled).all()
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-4)
