"""Data-parallel training (gloo, 2 CPU processes on loopback): replicas stay bitwise
identical, equal one process with the same global batch and seed, and ``--nproc``
writes one run directory and resumes.

Equality with one process needs the same noise and no per-rank batch statistics:
quickstart has no batch norm (with batch norm on CPU each rank normalises with its
shard's statistics, see docs/distributed.md), and its training split is cut to 250
digits (3 global batches of 64 and a short one of 58) to keep the runs short.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pyro
import pytest
import torch

from hiervae.data.observations import Observations
import torch.multiprocessing as mp

from hiervae import cli
from hiervae.program import build_program, elbo_terms
from hiervae.data import load_dataset
from hiervae.graph import build_graph
from hiervae.run import RunDir
from hiervae.language import load_spec
from hiervae.policy import select_analytic_kl
from hiervae.train import Trainer, fit
from hiervae.train import collectives as D

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "specs" / "quickstart.yaml"
SMALL = ["data.validation=1347"]  # 250 training digits: 4 steps per epoch
TINY_IAF = """
name: tiny-iaf
data: {dataset: digits, validation: 200}
model:
  - z: {latent: 4, dist: std_normal}
  - x: {observed: [64], dist: bernoulli, given: [z], net: {mlp: [32], dropout: 0.2}}
guide:
  - z: {dist: iaf, given: [x], encoders: {x: {mlp: [32], out: 16}}, net: {mlp: [32]}, options: {steps: 1, hidden: [16]}}
train: {batch_size: 8, epochs: 1}
"""


def assert_close_states(a: dict, b: dict, exact: bool = False):
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


# ---------------------------------------------------------------- in one process
def _program(spec_path, overrides=()):
    graph = build_graph(load_spec(spec_path, list(overrides)))
    pyro.set_rng_seed(0)
    return graph, build_program(graph)


@pytest.mark.parametrize("spec", ["quickstart", "iaf"])
def test_sharded_noise_is_the_single_process_noise(spec, tmp_path):
    """Each rank draws the global batch's noise and keeps its rows: the ELBO terms of
    the shards are the rows of one process's terms, and the generator ends in step."""
    if spec == "iaf":
        path = tmp_path / "iaf.yaml"
        path.write_text(TINY_IAF)
        graph, program = _program(path)
    else:
        graph, program = _program(QUICKSTART)
    analytic = select_analytic_kl(graph)
    x = torch.rand(12, 64).round()
    torch.manual_seed(5)
    whole = elbo_terms(program, x, analytic)
    after_whole = torch.get_rng_state()
    parts = []
    D._shard_dropout(program, 0, 3)  # the iaf decoder has dropout: its masks are sharded the same way
    for rank in range(3):
        for m in program.modules():
            if isinstance(m, D.ShardedDropout):
                m.rank = rank
        torch.manual_seed(5)
        with D.ShardedNoise(rank, 3):
            parts.append(elbo_terms(program, x[4 * rank : 4 * rank + 4], analytic))
        assert torch.equal(torch.get_rng_state(), after_whole)
    for name in ["log_likelihood", *(("kl", k) for k in whole.kl)]:
        get = (lambda t: t.log_likelihood) if name == "log_likelihood" else (lambda t, k=name[1]: t.kl[k])
        torch.testing.assert_close(torch.cat([get(p) for p in parts]), get(whole), rtol=1e-5, atol=1e-5)


def test_sharded_dropout_masks_are_the_global_mask():
    x = torch.randn(6, 50)
    torch.manual_seed(1)
    whole = torch.nn.Dropout(0.3)(x)
    parts = []
    for rank in range(2):
        torch.manual_seed(1)
        parts.append(D.ShardedDropout(0.3, rank, 2)(x[3 * rank : 3 * rank + 3]))
    assert torch.equal(torch.cat(parts), whole)
    module = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Dropout(0.1)))
    D._shard_dropout(module, 1, 2)
    assert isinstance(module[1][0], D.ShardedDropout) and module[1][0].rank == 1
    assert torch.equal(D.ShardedDropout(0.5, 0, 2).eval()(x), x)


def test_nproc_refuses_what_cannot_work(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    assert cli.main(["fit", str(QUICKSTART), "--out", out, "--nproc", "3", "-q"]) == 2
    assert "batch_size 64" in capsys.readouterr().err and not Path(out).exists()
    assert cli.main(["fit", str(QUICKSTART), "--out", out, "--nproc", "2", "--device", "cuda", "-q"]) == 2
    assert "GPU" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["fit", str(QUICKSTART), "--out", out, "--nproc", "2", "-q"]) == 2
    assert "torchrun" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert D.World.from_env("cpu") is None  # a world of one is plain training


# ---------------------------------------------------------------- 2 processes
def _setup(overrides):
    spec = load_spec(QUICKSTART, overrides)
    graph = build_graph(spec)
    splits = load_dataset(graph.data.dataset, binarize=graph.data.binarize, validation=graph.data.validation)
    return graph, splits, select_analytic_kl(graph)


def _train(graph, splits, analytic, world, epochs):
    pyro.set_rng_seed(graph.train.seed)
    program = build_program(graph)
    if world is not None:
        program = world.prepare(program)
    trainer = Trainer(program, graph, splits, device=torch.device("cpu"), analytic_kl=analytic, world=world)
    with pyro.validation_enabled(False):
        summaries = [trainer.train_epoch(e) for e in range(epochs)]
    return trainer, summaries


def _replica(rank: int, world_size: int, out: str, epochs: int, setup, nan_step: int | None) -> None:
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), GLOO_SOCKET_IFNAME="lo")
    os.environ[D.INIT_FILE_ENV] = str(Path(out) / "rendezvous")  # no port race with parallel tests
    if nan_step is not None and rank == 1:  # poison one step's data on rank 1 only
        step = Trainer.train_step

        def poisoned(self, x, stats):
            poison = self.state.step == nan_step
            return step(self, Observations({k: v * float("nan") for k, v in x.items()}) if poison else x, stats)

        Trainer.train_step = poisoned
    world = D.World.from_env("cpu")
    try:
        trainer, summaries = _train(*setup, world, epochs)
        torch.save({"program": trainer.program.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                    "rng": torch.get_rng_state(), "summaries": summaries}, Path(out) / f"rank{rank}.pt")
    finally:
        world.close()


def _replicas(tmp_path: Path, epochs: int, setup, nan_step: int | None = None) -> list[dict]:
    """Train 2 replicas forked from this process (which has torch, the data and the spec
    loaded: 2 s per process instead of 8 on a busy 2-core machine; the spawned path of
    ``--nproc`` is tested below)."""
    ctx = mp.start_processes(_replica, args=(2, str(tmp_path), epochs, setup, nan_step), nprocs=2,
                             join=False, start_method="fork")
    deadline = time.monotonic() + 120
    try:
        while not ctx.join(timeout=1):
            assert time.monotonic() < deadline, "the replicas did not finish in 120 s"
    finally:
        for p in ctx.processes:
            p.kill() if p.is_alive() else None
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def assert_same_replicas(r0: dict, r1: dict) -> None:
    assert_close_states(r0["program"], r1["program"], exact=True)
    for k in r0["optimizer"]["state"]:
        assert_close_states(r0["optimizer"]["state"][k], r1["optimizer"]["state"][k], exact=True)
    assert r0["summaries"] == r1["summaries"]


@pytest.mark.parametrize("free_bits", [1e-6, 100.0])
def test_replicas_are_identical_and_equal_one_process(tmp_path, free_bits):
    """2 epochs (beta rising stepwise from 0 to 0.175), 8 steps of a global batch of 64 in
    two shards of 32 (the last of 29): replicas bitwise equal, and equal to one process with
    batch 64 up to summation order.  Free bits take both branches of the global-mean rule:
    no latent is charged its floor (1e-6 nats), every latent is (100 nats)."""
    epochs = 2
    setup = _setup(SMALL + [f"train.free_bits={free_bits}"])
    single, summaries = _train(*setup, None, epochs)  # also warms up what the forked replicas inherit
    rng = torch.get_rng_state()
    r0, r1 = _replicas(tmp_path, epochs, setup)
    assert_same_replicas(r0, r1)

    assert single.state.step == 8 and [s["steps"] for s in summaries] == [4, 4]
    assert_close_states(r0["program"], single.program.state_dict())
    assert torch.equal(r0["rng"], rng)  # the same noise was drawn, in the same order
    kl = summaries[-1]["kl_per_latent"]
    assert (max(kl.values()) < free_bits) == (free_bits == 100.0)  # which branch the floor took
    assert (min(kl.values()) > free_bits) == (free_bits == 1e-6)
    for mine, theirs in zip(r0["summaries"], summaries):
        for key in ("train_elbo", "train_loss", "train_kl", "beta", "nonfinite", "steps"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-6), key


def test_a_nonfinite_step_on_one_rank_is_skipped_by_all(tmp_path):
    setup = _setup(SMALL)
    r0, r1 = _replicas(tmp_path, 1, setup, nan_step=2)
    assert_same_replicas(r0, r1)
    assert r0["summaries"][0]["nonfinite"] == 1 and r0["summaries"][0]["steps"] == 4
    assert all(torch.isfinite(v).all() for v in r0["program"].values() if v.is_floating_point())


def test_nproc_resumes_a_run_and_matches_one_process(tmp_path, capfd):
    """``--nproc 2 --resume`` continues a one-process run (batches and noise do not
    depend on the number of processes); rank 0 alone writes the run directory."""
    first = tmp_path / "one-process"
    fit(QUICKSTART, SMALL + ["train.epochs=1"], out=first, quiet=True)
    out = Path(shutil.copytree(first, tmp_path / "run"))
    straight = fit(QUICKSTART, SMALL + ["train.epochs=2"], out=first, resume=True, quiet=True)
    args = ["fit", str(QUICKSTART), "--out", str(out), "--resume", "--nproc", "2", "--threads", "1"]
    assert cli.main(args + [f"--set={o}" for o in SMALL] + ["--epochs", "2"]) == 0
    printed = capfd.readouterr().out
    assert printed.count("resuming") == 1 and printed.count("data parallel: 2 processes") == 1
    assert "trained 2 epochs (8 steps" in printed and printed.count("epoch 2/2") == 1

    a, b = RunDir(straight.run.path).load_checkpoint(), RunDir(out).load_checkpoint()
    assert b["epoch"] == 2 and b["step"] == 8
    assert_close_states(a["program"], b["program"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert b["valid_elbo"] == pytest.approx(a["valid_elbo"], rel=1e-5)
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and "tensorboard" not in p.parts)
    assert names == ["best.pt", "checkpoint.pt", "metrics.jsonl", "plots/kl_per_latent.png", "plots/learning_curves.png", "spec.yaml"]
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one per session, rank 0's
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"epoch": 2' in lines[1]


@pytest.mark.slow
def test_an_error_in_the_processes_is_reported_once(tmp_path, capfd):
    """Rank 0 finds the run directory taken; every rank stops, the launcher prints one line."""
    out = tmp_path / "run"
    fit(QUICKSTART, SMALL + ["train.epochs=1"], out=out, quiet=True)
    before = (out / "checkpoint.pt").read_bytes()
    args = ["fit", str(QUICKSTART), "--out", str(out), "--nproc", "2", "--threads", "1", "--epochs", "1", "-q"]
    assert cli.main(args + [f"--set={o}" for o in SMALL]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and err[0].startswith("hiervae fit: error:"), err
    assert (out / "checkpoint.pt").read_bytes() == before
