"""``train.compile: true``: the trace-free loss compiles to one graph, once.

A tiny spec (digits, 2 layers) is trained for three epochs with an annealed beta (a
0-d tensor) and a validation pass (eval mode, eager) between epochs: after the first
epoch dynamo must not compile anything again, nothing may break the graph, and the
compiled loss must be the eager one.  ``fit`` reports the first step's time
(compilation included) in its result and as a ``"kind": "compile"`` metrics line.
"""

from __future__ import annotations

import json

import pyro
import pytest
import torch
from torch._dynamo.utils import counters

from hiervae.program import build_program
from hiervae.data import load_dataset
from hiervae.graph import build_graph
from hiervae.language import load_spec
from hiervae.policy import select_analytic_kl
from hiervae.train import Trainer, fit

TINY = """
name: tiny-compiled
vars: {L: 2}
data: {dataset: digits, validation: 1397}
networks:
  evidence: {mlp: [16], activation: relu, out: 8, batch_norm: true}
  latent:   {mlp: [16], activation: relu, out: 8}
  gauss:    {mlp: [16], activation: relu}
  bij:      {mlp: [8], activation: tanh, out_activation: tanh}
  decoder:  {mlp: [16], activation: relu, batch_norm: true}
model:
  - for: l in 1..L
    nodes:
      eps(l): {latent: 4, dist: normal, given: [z(l-1)], net: gauss}
      z(l): {transform: affine_lowrank, input: eps(l), given: [z(l-1)], net: bij}
  - x: {observed: [64], dist: bernoulli, given: [z1, z(L)], net: decoder}
guide:
  - for: l in 1..L
    factors:
      eps(l): {dist: normal, given: [x, z(l-1)], encoders: {x: evidence, z(l-1): latent}, net: gauss}
train: {batch_size: 50, epochs: 3, kl_warmup: {schedule: linear, epochs: 2}, compile: true}
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def dynamo_counts() -> dict:
    return {"graphs": counters["stats"]["unique_graphs"], "breaks": sum(counters["graph_break"].values()),
            "frames": counters["frames"]["ok"]}


@pytest.mark.slow  # compiling even this tiny model takes ~45 s on the 2 shared CPU cores
def test_compiled_loss_is_one_graph_compiled_once(tiny):
    torch._dynamo.reset()
    counters.clear()
    graph = build_graph(load_spec(tiny))
    splits = load_dataset("digits", validation=graph.data.validation)
    pyro.set_rng_seed(0)
    program = build_program(graph)
    analytic = select_analytic_kl(graph)
    trainer = Trainer(program, graph, splits, device=torch.device("cpu"), analytic_kl=analytic)
    assert len(splits.train) % graph.train.batch_size == 0  # 200 digits: every batch the same shape

    # the compiled loss is the eager loss (same seed, same batch)
    x = program.observations(splits.train[:50])
    pyro.set_rng_seed(1)
    compiled = trainer.objective(x, torch.tensor(0.5))
    pyro.set_rng_seed(1)
    eager = trainer._objective(x, torch.tensor(0.5))
    assert compiled[3] is None and eager[3] is None  # no DReG surrogate
    for a, b in zip(compiled[:3], eager[:3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    after_first = dynamo_counts()
    assert after_first["breaks"] == 0 and after_first["graphs"] == 1

    betas = []
    for epoch in range(3):  # linear warm-up: a new beta every step (stepwise), a 0-d tensor
        betas.append(trainer.train_epoch(epoch)["beta"])
        trainer.validate()  # eval mode, eager, between epochs
    assert len(set(betas)) == 3
    assert dynamo_counts() == after_first  # nothing compiled again, nothing broke the graph


@pytest.mark.slow  # compiles (fast only when the previous test filled inductor's cache)
def test_fit_reports_the_compile_time(tiny, tmp_path):
    result = fit(tiny, ["train.epochs=1"], out=tmp_path / "run", quiet=True)
    assert result.compile_seconds is not None and result.compile_seconds > 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    compile_lines = [r for r in records if r["kind"] == "compile"]
    assert len(compile_lines) == 1 and compile_lines[0]["first_step_s"] == pytest.approx(result.compile_seconds, abs=1e-3)
