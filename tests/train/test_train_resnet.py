"""The ResNet SeRe-VAE end to end on CPU, shrunk to 2 layers and the 8x8 digits: fit learns, eval gives IW."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hiervae.cli import main
from hiervae.train import fit

SPECS = Path(__file__).resolve().parents[2] / "specs"

# the paper's structure (ResNet encoders and decoder, residual layers, linear warm-up) with
# small networks on 250 training digits: 5 steps of 50 per epoch
SMALL = ["vars.L=2", "data.dataset=digits", "data.validation=1347", "model.1.x.observed=[1,8,8]",
         "networks.evidence.resnet=[4,8]", "networks.evidence.out=16", "networks.decoder.resnet=[8,4]",
         "networks.latent.mlp=[32]", "networks.gauss.mlp=[32]", "networks.bij.mlp=[8]",
         "train.batch_size=50", "train.optimizer.lr=3.0e-3", "train.epochs=4", "train.kl_warmup.epochs=2"]


@pytest.mark.parametrize("name", ["sere_resnet_mnist", "sere_resnet_mnist_faithful"])
def test_fit_learns_and_eval_gives_iw(name, tmp_path, capsys):
    result = fit(SPECS / f"{name}.yaml", SMALL, out=tmp_path / "run", quiet=True)
    h = result.history
    # linear warm-up (Table 7), 2 epochs here, rising at every step: beta = (e + k/5) / 2
    # for step k of epoch e; an epoch reports the mean of its steps' betas
    assert [r["beta"] for r in h] == pytest.approx([0.2, 0.7, 1.0, 1.0])
    assert result.step == 4 * 5
    # reconstruction improves while beta is small, and the full ELBO improves once beta is 1
    assert h[1]["train_log_likelihood"] > h[0]["train_log_likelihood"]
    assert h[3]["train_loss"] < h[2]["train_loss"] and h[3]["valid_elbo"] > h[0]["valid_elbo"]

    assert main(["eval", str(tmp_path / "run"), "--iw", "20", "--limit", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 20 and report["importance_samples"] == 20
    iw, elbo = report["iw_log_likelihood"], report["elbo"]
    assert math.isfinite(iw) and iw < 0
    assert iw >= elbo - 1.0  # IW bound at least the ELBO, up to Monte Carlo noise on 20 digits
