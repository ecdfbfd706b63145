"""Training flow models: SeRe-MAF and plain MAF learn on dequantised pixels, the Table 8
phases (reconstruction only + cosine LR, geometric warm-up, full ELBO) are wired, dropout
and L2 are honoured, and `fit` / `eval` on CIFAR-format files report bits/dim."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyro
import pytest
import torch

from hiervae.cli import main
from hiervae.program import build_program
from hiervae.data import DataSplits, EVAL_SEEDS
from hiervae.data.dequantize import dequantize_fixed
from hiervae.errors import SpecError
from hiervae.graph import build_graph
from hiervae.data.dequantize import bits_per_dim
from hiervae.language import parse_spec
from hiervae.policy import select_analytic_kl
from hiervae.train import Trainer, fit
from hiervae.data.binding import bind

SPECS = Path(__file__).resolve().parents[2] / "specs"

TABLE_8 = ["train.epochs=6", "train.reconstruction_epochs=2", "train.lr_schedule=cosine",
           "train.kl_warmup={schedule: geometric, levels: 2, epochs: 2}", "train.free_bits=0.1",
           "train.optimizer.weight_decay=1.0e-3"]


def splits_of(flows, n_train=96, n_valid=32) -> DataSplits:
    train = flows.pixels(n_train, seed=1)
    valid = torch.from_numpy(dequantize_fixed(flows.pixels(n_valid, seed=2).numpy(), EVAL_SEEDS["valid"]))
    return DataSplits("tiny", train, valid, valid, (6,), (2, 3), "none", dequantize="uniform")


def trainer_for(text, flows, overrides=()):
    graph = build_graph(parse_spec(text, overrides=overrides))
    splits = splits_of(flows)
    bind(splits, graph)
    pyro.set_rng_seed(0)
    program = build_program(graph)
    return Trainer(program, graph, splits, device=torch.device("cpu"), analytic_kl=select_analytic_kl(graph))


def test_sere_maf_learns_through_the_table_8_phases(flows):
    trainer = trainer_for(flows.sere_maf, flows, TABLE_8)
    # phases: beta 0 with a cosine LR for 2 epochs, geometric warm-up, then beta 1 at the constant LR
    settings = [(trainer.betas(e), trainer.lrs(e)) for e in range(6)]  # geometric: one beta per epoch
    assert [b for b, _ in settings[:3]] == [0.0, 0.0, 0.0] and settings[3][0] == pytest.approx(10 ** -0.5)
    assert settings[4][0] == settings[5][0] == 1.0
    assert [lr for _, lr in settings] == pytest.approx([3e-3, 1.5e-3, 3e-3, 3e-3, 3e-3, 3e-3])
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 1e-3
    before = trainer.validate()
    epochs = [trainer.train_epoch(e) for e in range(6)]
    after = trainer.validate()
    assert [e["phase"] for e in epochs[:2]] == ["reconstruction"] * 2
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]  # the same objective (-log p) in both
    assert after["valid_elbo"] > before["valid_elbo"], (before, after)
    assert all(e["nonfinite"] == 0 for e in epochs)
    # bits/dim of the ELBOs: -(elbo - D log 256) / (D log 2), D = 6 pixels
    for summary, key, elbo in [(epochs[-1], "train_bits_per_dim", "train_elbo"), (after, "valid_bits_per_dim", "valid_elbo")]:
        assert summary[key] == pytest.approx(-(summary[elbo] - 6 * math.log(256)) / (6 * math.log(2)), rel=1e-12)


def test_plain_maf_learns(flows):
    trainer = trainer_for(flows.maf, flows, ["train.epochs=8"])
    assert trainer.program.latents == []
    # validation at initialisation, in eval mode (batch-norm bijectors the identity):
    # finite because every MAF step starts as the identity (test_nn_maf_stability.py)
    first = trainer.validate()
    epochs = [trainer.train_epoch(e) for e in range(8)]
    after = trainer.validate()
    losses = [e["train_loss"] for e in epochs]
    # properties, not gains tuned on one CPU: the loss falls over the run, and the validation
    # ELBO and bits/dim improve
    assert min(losses[4:]) < min(losses[:4]) and losses[-1] < losses[0], losses
    assert after["valid_elbo"] > first["valid_elbo"] and after["valid_kl"] == 0
    assert after["valid_bits_per_dim"] < first["valid_bits_per_dim"]
    assert epochs[-1]["train_elbo"] == pytest.approx(epochs[-1]["train_log_likelihood"]) == pytest.approx(-losses[-1])


def test_dropout_and_weight_decay_are_honoured(flows):
    text = flows.sere_maf.replace("base:   {mlp: [8], activation: relu}", "base:   {mlp: [8], activation: relu, dropout: 0.5}")
    trainer = trainer_for(text, flows, ["train.optimizer.weight_decay=0.01"])
    assert all(g["weight_decay"] == 0.01 for g in trainer.optimizer.param_groups)
    residual = trainer.program.sites["gamma2"]
    drops = [m for m in residual.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(m.p == 0.5 for m in drops)
    ctx = torch.randn(64, residual.context_features)
    residual.train()
    assert not torch.equal(residual.condition(ctx)(None), residual.condition(ctx)(None))  # active in training
    residual.eval()
    assert torch.equal(residual.condition(ctx)(None), residual.condition(ctx)(None))
    # L2 is applied by the optimiser: with zero gradients a step still shrinks the weights
    w = residual.net.net.net[0].weight  # Residual -> ParamNet -> MLP -> first Linear
    before = w.detach().clone()
    for p in trainer.params:
        p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    assert (w.detach().abs() < before.abs()).float().mean() > 0.9


def test_logit_space_flow_on_undequantised_data_is_refused(flows, one_line):
    """By the graph builder (so `check` says it) for a named dataset, and at load time for data
    that turn out not to be dequantised."""
    with pytest.raises(SpecError) as err:
        build_graph(parse_spec((SPECS / "maf_cifar10.yaml").read_text(), file="m.yaml", overrides=["data.dequantize=none"]))
    assert "continuous density (maf)" in one_line(err) and "set data.dequantize: uniform" in one_line(err)
    graph = build_graph(parse_spec(flows.maf, file="t.yaml"))
    t = flows.pixels(4)
    with pytest.raises(SpecError) as err:
        bind(DataSplits("tiny", t, t, t, (6,), (2, 3), "none"), graph)
    assert "set data.dequantize: uniform" in one_line(err) and one_line(err).startswith("t.yaml:")


SHRUNK_MAF = ["model.0.x.net.mlp=[4]", "model.0.x.options.flows=1", "model.0.x.options.mades_per_flow=2",
              "data.validation=12", "train.batch_size=16", "train.epochs=2", "eval.chunk_size=2"]


def test_fit_and_eval_plain_maf_on_cifar_format_files(fake_cifar10, tmp_path, capsys):
    """The shipped MAF spec (shrunk) end to end on generated CIFAR-10 files: metrics and
    `eval` in nats and bits/dim; without latents IW and ELBO are the exact log-likelihood."""
    out = tmp_path / "run"
    result = fit(SPECS / "maf_cifar10.yaml", SHRUNK_MAF, out=out, data_dir=fake_cifar10, download=False, quiet=True)
    assert result.epochs == 2
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for r in lines:
        assert r["valid_bits_per_dim"] == pytest.approx(bits_per_dim(r["valid_elbo"], 3072), rel=1e-12)
        assert r["train_bits_per_dim"] == pytest.approx(bits_per_dim(r["train_elbo"], 3072), rel=1e-12)
        assert 0 < r["valid_bits_per_dim"] < 12
    capsys.readouterr()
    assert main(["eval", str(out), "--iw", "3", "--device", "cpu", "--data-dir", str(fake_cifar10),
                 "--no-download", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 12 and report["kl"] == {}
    assert report["iw_log_likelihood"] == pytest.approx(report["elbo"], rel=1e-6)
    assert report["iw_bits_per_dim"] == pytest.approx(bits_per_dim(report["iw_log_likelihood"], 3072), rel=1e-12)
    assert report["elbo_bits_per_dim"] == pytest.approx(bits_per_dim(report["elbo"], 3072), rel=1e-12)
    assert main(["eval", str(out), "--iw", "2", "--device", "cpu", "--data-dir", str(fake_cifar10), "--no-download"]) == 0
    table = capsys.readouterr().out
    assert "nats  (" in table and "bits/dim)" in table
