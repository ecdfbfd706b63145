"""``hiervae eval`` / ``hiervae sample`` on run directories, and the image grids."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyro
import pytest
import torch

from hiervae.cli import main
from hiervae.program import build_program
from hiervae.evaluation import evaluate_split, sample_means
from hiervae.run import RunDir

TINY_MNIST = """
name: tiny-mnist
data: {dataset: mnist, binarize: dynamic, validation: 10000}
model:
  - z: {latent: 2, dist: std_normal}
  - x: {observed: [784], dist: bernoulli, given: [z], net: {mlp: [8]}}
guide:
  - z: {dist: normal, given: [x], net: {mlp: [8]}}
"""


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.delenv("HIERVAE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def make_run(path, spec_source, seed: int = 0) -> RunDir:
    run = RunDir(path)
    run.path.mkdir(parents=True)
    if isinstance(spec_source, str):
        run.spec.write_text(spec_source)
    else:
        shutil.copy(spec_source, run.spec)
    torch.manual_seed(seed)
    run.save_checkpoint({"program": build_program(run.load_graph()).state_dict(), "epoch": 0})
    return run


@pytest.fixture
def quick_run(tmp_path, quickstart_path) -> RunDir:
    return make_run(tmp_path / "run", quickstart_path)


def digits_test():
    from hiervae.data import load_dataset

    return load_dataset("digits", binarize="dynamic", validation=200)


def test_eval_command_writes_json_equal_to_evaluate(quick_run, capsys):
    assert main(["eval", str(quick_run.path), "--iw", "5", "--limit", "30", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "IW log-likelihood" in out and "eps3" in out and "eval_test.json" in out
    report = json.loads((quick_run.path / "eval_test.json").read_text())
    assert report["examples"] == 30 and report["importance_samples"] == 5 and report["split"] == "test"
    assert set(report["kl"]) == {"eps1", "eps2", "eps3"} and report["units_total"] == 12
    # the same numbers as the library call with the same seed and data
    trained = quick_run.load_trained()
    graph, program = trained.graph, trained.program
    pyro.set_rng_seed(0)
    r = evaluate_split(program, digits_test(), graph.eval, "test", analytic_kl=trained.analytic_kl,
                 importance_samples=5, limit=30)
    assert report["iw_log_likelihood"] == r.iw_log_likelihood and report["kl"] == r.kl
    assert report["analytic_kl"] is True  # quickstart: analytic KL is valid (check)


def test_eval_command_json_and_valid_split(quick_run, capsys):
    assert main(["eval", str(quick_run.path), "--iw", "3", "--limit", "10", "--split", "valid", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((quick_run.path / "eval_valid.json").read_text())
    assert printed["split"] == "valid" and printed["examples"] == 10
    assert not (quick_run.path / "eval_test.json").exists()


def _error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"hiervae {command}: error: ")
    return err


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_eval_errors_are_one_line_exit_2(tmp_path, quickstart_path, capsys, command):
    assert main([command, str(tmp_path / "nope")]) == 2
    assert "no such run directory" in _error_line(capsys, command)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([command, str(empty)]) == 2
    assert "no spec.yaml" in _error_line(capsys, command)

    run = make_run(tmp_path / "run", quickstart_path)
    run.checkpoint.unlink()
    assert main([command, str(run.path)]) == 2
    assert "no checkpoint.pt" in _error_line(capsys, command)

    run.checkpoint.write_bytes(b"\x00garbage, not a checkpoint")
    assert main([command, str(run.path)]) == 2
    assert "unreadable checkpoint" in _error_line(capsys, command)

    other = make_run(tmp_path / "other", TINY_MNIST)
    shutil.copy(other.checkpoint, run.checkpoint)  # weights of another model
    assert main([command, str(run.path)]) == 2
    assert "does not match" in _error_line(capsys, command)


def test_eval_missing_data_is_one_line_exit_2(tmp_path, capsys):
    run = make_run(tmp_path / "run", TINY_MNIST)
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(["eval", str(run.path), "--data-dir", str(empty), "--no-download"]) == 2
    assert "mnist" in _error_line(capsys, "eval")
    assert not (run.path / "eval_test.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available")
def test_eval_cuda_without_a_gpu(quick_run, capsys):
    assert main(["eval", str(quick_run.path), "--device", "cuda"]) == 2
    assert "CUDA" in _error_line(capsys, "eval")


@pytest.mark.parametrize("bad", [["--iw", "0"], ["--limit", "-3"], ["--split", "train"]])
def test_eval_bad_arguments_exit_2(quick_run, bad, capsys):
    assert main(["eval", str(quick_run.path), *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hiervae eval: error: argument") and len(err.strip().splitlines()) == 1


def _read_png(path) -> np.ndarray:
    from matplotlib import image

    return image.imread(path)[..., 0]  # grey: R = G = B


def test_eval_sample_command_writes_grids(quick_run, tmp_path, capsys):
    out = tmp_path / "pngs"
    assert main(["sample", str(quick_run.path), "-n", "20", "--out", str(out), "--seed", "3"]) == 0
    assert capsys.readouterr().out.split() == [str(out / "samples.png"), str(out / "reconstructions.png")]
    samples = _read_png(out / "samples.png")
    # 20 images of 8x8 in 5 columns x 4 rows, 1 pixel apart, scaled by an integer factor
    grid_h, grid_w = 4 * 9 - 1, 5 * 9 - 1
    scale = samples.shape[0] // grid_h
    assert samples.shape == (grid_h * scale, grid_w * scale) and scale > 1
    cells = samples[::scale, ::scale]
    images = np.stack([cells[r * 9 : r * 9 + 8, c * 9 : c * 9 + 8] for r in range(4) for c in range(5)])
    assert ((images > 0.02) & (images < 0.98)).mean() > 0.5  # Bernoulli means, not binary draws

    recon = _read_png(out / "reconstructions.png")
    cols = math.ceil(math.sqrt(20 / 2))  # 4 pairs per row, 5 rows
    grid_h, grid_w = 5 * 9 - 1, cols * 17 - 1
    scale = recon.shape[0] // grid_h
    assert recon.shape == (grid_h * scale, grid_w * scale)
    cells = recon[::scale, ::scale]
    test = digits_test().test[:20].numpy().reshape(20, 8, 8)
    for i in range(20):
        r, c = divmod(i, cols)
        left = cells[r * 9 : r * 9 + 8, c * 17 : c * 17 + 8]
        np.testing.assert_array_equal(left, test[i])  # test image | reconstruction, in order
        right = cells[r * 9 : r * 9 + 8, c * 17 + 8 : c * 17 + 16]
        assert not np.array_equal(right, test[i])


def test_eval_sample_defaults_to_the_run_dir(quick_run):
    assert main(["sample", str(quick_run.path), "-n", "4"]) == 0
    assert (quick_run.path / "samples.png").is_file() and (quick_run.path / "reconstructions.png").is_file()


def test_eval_sample_means_are_ancestral_means(lg):
    """Linear-Gaussian: E[x | z] = W z + b with z ~ p(z), so Cov = W W^T (draws would add s^2 I)."""
    program = lg.program()
    pyro.set_rng_seed(0)
    m = sample_means(program, 20000)
    assert m.shape == (20000, 3)
    torch.testing.assert_close(m.mean(0), lg.B, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(m.T), lg.W @ lg.W.T, atol=0.06, rtol=0)
