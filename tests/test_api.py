"""The Python API on a short quickstart run: what each call returns, checked against the
program it wraps; eval --per-example and --best through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import hiervae
from hiervae.cli import main
from hiervae.errors import HiervaeError

QUICKSTART = Path(__file__).resolve().parents[1] / "specs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    hiervae.fit(QUICKSTART, ["train.epochs=2"], out=out, quiet=True)
    return out


def test_decode_fixes_the_given_node_and_draws_the_rest(run):
    model = hiervae.load_run(run)
    z3 = torch.randn(5, 4)
    with torch.no_grad():
        expected = model.program.prior("x", {"z3": z3}).mean
    torch.testing.assert_close(model.decode({"z3": z3})["x"].mean, expected)
    a, b = model.decode({"eps1": torch.zeros(5, 4)}), model.decode({"eps1": torch.zeros(5, 4)})
    assert not torch.equal(a["x"].mean, b["x"].mean)  # eps2, eps3 drawn from the prior each time
    with pytest.raises(HiervaeError, match="decode takes latent or transform nodes: x is not one"):
        model.decode({"x": torch.zeros(5, 64)})


def test_encode_means_are_the_mean_of_samples_and_scores_agree(run):
    model = hiervae.load_run(run)
    x = model.data("test").rows(slice(0, 6))
    torch.manual_seed(0)
    draws = model.encode(x, samples=4000)
    means = model.encode(x)
    assert draws["eps3"].shape == (4000, 6, 4) and means["eps3"].shape == (6, 4)
    torch.testing.assert_close(means["eps1"], draws["eps1"].mean(0), atol=0.08, rtol=0)
    ll = model.log_likelihood(x, samples=500)
    elbo = model.elbo(x).elbo
    assert ll.shape == elbo.shape == (6,) and (ll > elbo - 0.5).all()
    assert set(model.sample(3)) == {"eps1", "z1", "eps2", "z2", "eps3", "z3", "x"}


def test_eval_per_example_and_best(run, capsys):
    assert main(["eval", str(run), "--iw", "20", "--limit", "30", "--per-example", "--best"]) == 0
    rows = list(csv.DictReader((run / "eval_test_per_example.csv").open()))
    summary = json.loads((run / "eval_test.json").read_text())
    assert len(rows) == 30 and [int(r["index"]) for r in rows] == list(range(30))
    mean = sum(float(r["iw_log_likelihood"]) for r in rows) / 30
    assert mean == pytest.approx(summary["iw_log_likelihood"], abs=1e-9)
    assert (run / "best.pt").is_file()
