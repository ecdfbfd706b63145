"""Device and precision handling of training: no host syncs in the step, bf16 networks, data placement."""

from __future__ import annotations

import math
from pathlib import Path

import pyro
import pytest
import torch

from hiervae.program import build_program
from hiervae.data import Batches, load_dataset
from hiervae.data import datasets as datasets_module
from hiervae.graph import load_graph
from hiervae.nn import MLP, ParamNet
from hiervae.policy import select_analytic_kl
from hiervae.train import Trainer
from hiervae.train.metrics import EpochStats

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"

def trainer(overrides=(), seed=0) -> Trainer:
    graph = load_graph(QUICKSTART, list(overrides))
    splits = load_dataset("digits", validation=graph.data.validation).place("cpu")
    pyro.set_rng_seed(seed)
    program = build_program(graph)
    return Trainer(program, graph, splits, device=torch.device("cpu"), analytic_kl=select_analytic_kl(graph))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_steps_make_no_host_sync(forbid_syncs, precision):
    t = trainer([f"train.precision={precision}", "train.batch_size=32"])
    t.program.train()
    stats = EpochStats(t.program.latents, t.device)
    batches = list(t.batches.epoch(0))[:4]
    before = [p.detach().clone() for p in t.params]
    with pyro.validation_enabled(False):
        forbid_syncs["on"] = True
        try:
            for x in batches:  # the first step too: optimiser state is created lazily in it
                t.train_step(x, stats)
        finally:
            forbid_syncs["on"] = False
    assert stats.steps == 4 and t.state.step == 4
    assert any(not torch.equal(a, p) for a, p in zip(before, t.params))  # the steps did train
    with pytest.raises(AssertionError, match="host sync"):  # and the guard has teeth
        forbid_syncs["on"] = True
        try:
            stats.summary()
        finally:
            forbid_syncs["on"] = False


def test_bf16_runs_the_networks_in_bf16_and_the_objective_in_float32():
    t = trainer(["train.precision=bf16"])
    t.program.eval()  # fixed batch norm statistics: both precisions see the same function
    inner, outer = [], []
    for m in t.program.modules():
        if isinstance(m, MLP):
            m.net[0].register_forward_hook(lambda mod, i, o: inner.append(o.dtype))
        if isinstance(m, ParamNet) and m.context_features:  # what the distribution heads receive
            m.register_forward_hook(lambda mod, i, o: outer.append(o.dtype))
    x = next(iter(t.batches.epoch(0)))
    pyro.set_rng_seed(1)
    with torch.no_grad():
        fp32, _, _, _ = t._objective(x, torch.tensor(1.0))
        assert set(inner) == {torch.float32}
        inner.clear(), outer.clear()
        pyro.set_rng_seed(1)
        from hiervae.nn.precision import network_precision

        with network_precision(t.program, "bf16", "cpu"):
            bf16, ll, kl, _ = t._objective(x, torch.tensor(1.0))
    assert set(inner) == {torch.bfloat16}  # the matmuls ran in bf16 ...
    assert set(outer) == {torch.float32}  # ... and every network handed float32 to the distributions
    assert bf16.dtype == ll.dtype == kl.dtype == torch.float32
    assert bf16 != fp32 and abs(bf16 - fp32) < 0.02 * abs(fp32)  # bf16 round-off, nothing worse
    assert not any(h for m in t.program.modules() for h in m._forward_hooks.values()
                   if getattr(h, "__name__", "") == "_to_float32")  # the hooks are gone after the block


def test_bf16_training_on_cpu_learns():
    t = trainer(["train.precision=bf16"])
    elbos = []
    with pyro.validation_enabled(False):
        for epoch in range(4):
            summary = t.train_epoch(epoch)
            assert summary["nonfinite"] == 0
            elbos.append(summary["train_elbo"])
    assert all(math.isfinite(e) for e in elbos)
    assert elbos[-1] > elbos[0], elbos  # loss decreasing: the ELBO rises
    valid = t.validate()
    assert math.isfinite(valid["valid_elbo"])


def test_precision_key_is_validated(one_line):
    from hiervae.errors import SpecError

    with pytest.raises(SpecError) as err:
        load_graph(QUICKSTART, ["train.precision=fp16"])
    assert "precision" in one_line(err)


# ---------------------------------------------------------------- data placement
def test_placement_rule_and_batches_on_an_explicit_device(monkeypatch):
    splits = load_dataset("digits", validation=200)
    assert splits.nbytes == sum(t.numel() * t.element_size() for t in
                                (splits.train, splits.valid, splits.test, splits.train_labels, splits.valid_labels,
                                 splits.test_labels))
    assert datasets_module.resident_on(10**15, "cpu")  # the host always holds it
    placed = splits.place("cpu")
    assert torch.equal(placed.train, splits.train)
    default = list(Batches(splits.train, 50, seed=3, binarize=True).epoch(2))
    explicit = list(Batches(splits.train, 50, seed=3, binarize=True, device="cpu").epoch(2))
    assert len(default) == len(explicit) and all(torch.equal(a, b) for a, b in zip(default, explicit))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_host_resident_batches_equal_device_resident_ones(monkeypatch):
    """Data too big for the GPU stays pinned on the host; batches and binarisation are the same."""
    splits = load_dataset("digits", validation=200)
    resident = splits.place("cuda")
    assert resident.train.is_cuda
    monkeypatch.setattr(datasets_module, "DEVICE_DATA_FRACTION", 0.0)
    host = splits.place("cuda")
    assert not host.train.is_cuda and host.train.is_pinned()
    a = list(Batches(resident.train, 64, seed=5, binarize=True).epoch(1))
    b = list(Batches(host.train, 64, seed=5, binarize=True, device="cuda").epoch(1))
    assert all(y.is_cuda for y in b)
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
