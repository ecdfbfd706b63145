"""The trainer applies a stepwise warm-up at every step (issue: KL explodes while beta = 0).

With the linear warm-up evaluated once per epoch (beta = e / W), the whole first epoch
trained at beta = 0; on the ResNet SeRe-VAE the posterior's scale then drifted (KL per
layer 7.6e10 after 60 MNIST steps; benchmarks/kl_warmup_probe.py).  The betas the
objective actually receives are recorded here, step by step.
"""

from __future__ import annotations

from pathlib import Path

import pyro
import pytest
import torch

from hiervae.program import build_program
from hiervae.data import load_dataset
from hiervae.graph import build_graph
from hiervae.language import load_spec
from hiervae.policy import select_analytic_kl
from hiervae.train import Trainer

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"


def _trainer(overrides) -> Trainer:
    graph = build_graph(load_spec(QUICKSTART, overrides))
    splits = load_dataset(graph.data.dataset, binarize=graph.data.binarize, validation=graph.data.validation)
    pyro.set_rng_seed(0)
    return Trainer(build_program(graph), graph, splits, device=torch.device("cpu"),
                   analytic_kl=select_analytic_kl(graph))


def _record_betas(trainer: Trainer) -> list[float]:
    seen: list[float] = []
    objective = trainer.objective

    def recording(x, beta):
        seen.append(float(beta))
        return objective(x, beta)

    trainer.objective = recording
    return seen


@pytest.mark.parametrize("recon", [0, 1])
def test_linear_warmup_beta_changes_at_every_step(recon):
    trainer = _trainer(["data.validation=1347", "train.kl_warmup={schedule: linear, epochs: 10}",
                        f"train.reconstruction_epochs={recon}"])
    seen = _record_betas(trainer)
    S = len(trainer.batches)
    summaries = [trainer.train_epoch(e) for e in range(recon + 2)]
    assert len(seen) == (recon + 2) * S
    expected = [0.0] * (recon * S) + [(e + k / S) / 10 for e in range(2) for k in range(S)]
    assert seen == pytest.approx(expected, abs=1e-7)  # float32 beta tensor
    assert all(b > 0 for b in seen[recon * S + 1 :])  # only the first warm-up step has beta = 0
    assert [s["beta"] for s in summaries[recon:]] == pytest.approx([(e + (S - 1) / (2 * S)) / 10 for e in range(2)])
    assert [s["phase"] for s in summaries] == ["reconstruction"] * recon + ["warmup"] * 2


def test_geometric_warmup_keeps_one_beta_per_epoch():
    trainer = _trainer(["data.validation=1347", "train.kl_warmup={schedule: geometric, levels: 2, epochs: 4}"])
    seen = _record_betas(trainer)
    S = len(trainer.batches)
    summaries = [trainer.train_epoch(e) for e in range(2)]
    assert seen == pytest.approx([0.0] * S + [10 ** -0.5] * S, abs=1e-7)
    assert [s["beta"] for s in summaries] == [0.0, pytest.approx(10 ** -0.5)]
