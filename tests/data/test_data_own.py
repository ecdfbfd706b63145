"""A user's own data through the command line: .npz / .npy / .pt files, one file split at its
end or one per split, several observed nodes bound to named arrays, provenance in the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fuzz.run import run
from hiervae.data import own
from hiervae.data.binding import bind
from hiervae.data.loading import load_data
from hiervae.graph import build_graph
from hiervae.language import parse_spec

SPEC = """
name: own
data: {dataset: DATASET, arrays: {x: x, y: y}, validation: 20, test: 30}
model:
  - y: {observed: [3], dist: categorical}
  - z: {latent: 2, dist: normal}
  - x: {observed: [5], dist: normal, given: [z, y], net: {mlp: [16], activation: tanh}}
guide:
  - z: {dist: normal, given: [x, y], net: {mlp: [16], activation: tanh}}
train: {batch_size: 25, epochs: 2}
eval: {importance_samples: 8, chunk_size: 8}
"""


def _arrays(n=200, seed=0):
    g = np.random.default_rng(seed)
    y = g.integers(0, 3, size=n)
    x = (g.normal(size=(n, 5)) + y[:, None]).astype(np.float32)
    return x, y


@pytest.fixture
def npz(tmp_path):
    x, y = _arrays()
    path = tmp_path / "data" / "measurements.npz"
    path.parent.mkdir()
    np.savez(path, x=x, y=y)
    return path


def _spec(tmp_path, dataset, text=SPEC, name="own.yaml"):
    path = tmp_path / name
    path.write_text(text.replace("DATASET", dataset))
    return path


def test_one_file_is_split_at_its_end_and_bound_by_name(tmp_path, npz):
    graph = build_graph(parse_spec(_spec(tmp_path, "data/measurements.npz").read_text(), file=str(tmp_path / "own.yaml")))
    data = load_data(graph)
    x, y = _arrays()
    assert (data.train.size, data.valid.size, data.test.size) == (150, 20, 30)
    np.testing.assert_array_equal(data.test["x"].numpy(), x[-30:])
    np.testing.assert_array_equal(data.valid["x"].numpy(), x[150:170])
    np.testing.assert_array_equal(data.train["y"].argmax(1).numpy(), y[:150])  # labels as one-hot rows
    assert data.train["y"].shape == (150, 3) and data.noisy == ()


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_npy_and_pt_hold_x(tmp_path, suffix):
    x, _ = _arrays()
    path = tmp_path / f"x{suffix}"
    np.save(path, x) if suffix == ".npy" else torch.save(torch.from_numpy(x), path)
    text = SPEC.replace("arrays: {x: x, y: y}, ", "").replace("  - y: {observed: [3], dist: categorical}\n", "")
    text = text.replace("given: [z, y]", "given: [z]").replace("given: [x, y]", "given: [x]")
    graph = build_graph(parse_spec(text.replace("DATASET", str(path))))
    data = load_data(graph)
    np.testing.assert_array_equal(data.train["x"].numpy(), x[:150])


def test_one_file_per_split(tmp_path):
    x, y = _arrays()
    for split, rows in {"train": slice(0, 150), "test": slice(150, 200)}.items():
        np.savez(tmp_path / f"{split}.npz", x=x[rows], y=y[rows])
    text = SPEC.replace("dataset: DATASET", "dataset: files, files: {train: train.npz, test: test.npz}").replace(", test: 30", "")
    graph = build_graph(parse_spec(text, file=str(tmp_path / "own.yaml")))
    data = load_data(graph)
    assert (data.train.size, data.valid.size, data.test.size) == (130, 20, 50)
    np.testing.assert_array_equal(data.valid["x"].numpy(), x[130:150])


BAD = {
    "a missing file": (lambda d: "nothing.npz", "nothing.npz: no such file"),
    "an array the file lacks": (lambda d: d, "has no array 'y'"),
    "a node of the wrong size": (lambda d: d, "has 5 features but dataset"),
    "float labels for a categorical node": (lambda d: d, "must hold one integer label per example"),
    "a text file named .npz": (lambda d: d, "unreadable as .npz"),
    "an object array": (lambda d: d, "has dtype object; numbers only"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_own_data_is_one_line_at_check(tmp_path, case):
    path = tmp_path / "d.npz"
    x, y = _arrays()
    text = SPEC
    if case == "an array the file lacks":
        np.savez(path, x=x)
    elif case == "a node of the wrong size":
        np.savez(path, x=x[:, :4], y=y)
    elif case == "float labels for a categorical node":
        np.savez(path, x=x, y=y.astype(np.float32))
    elif case == "a text file named .npz":
        path.write_text("not a zip")
    elif case == "an object array":
        np.savez(path, x=x, y=np.array([{"a": 1}] * 200, dtype=object))
    else:
        np.savez(path, x=x, y=y)
    dataset, expected = BAD[case]
    spec = _spec(tmp_path, dataset("d.npz"), text)
    outcome = run(["check", str(spec)])
    assert outcome.problem() is None and outcome.code == 2, outcome
    assert expected in outcome.stderr and f"{spec}:" in outcome.stderr, outcome.stderr


def test_fit_eval_sample_from_another_directory_with_provenance(tmp_path, npz, monkeypatch):
    spec = _spec(tmp_path, "data/measurements.npz")
    monkeypatch.chdir(tmp_path / "data")  # relative paths are the spec's, not the working directory's
    out = tmp_path / "run"
    assert run(["fit", str(spec), "--out", str(out), "--quiet"]).code == 0
    saved = (out / "spec.yaml").read_text()
    assert str(npz.resolve()) in saved  # the run's copy of the spec finds the file from anywhere
    record = json.loads((out / "data.json").read_text())
    assert record["sha256"]["all"] == own.sha256_of(npz)
    monkeypatch.chdir(tmp_path)
    result = run(["eval", str(out), "--json"])
    assert result.code == 0 and "warning" not in result.stderr, result
    report = json.loads(result.stdout)
    assert report["examples"] == 30 and np.isfinite(report["iw_log_likelihood"])
    assert report["iw_log_likelihood"] >= report["elbo"]  # the IW bound is the tighter one
    x, y = _arrays(seed=1)  # the file changes after training: eval still runs and says so
    np.savez(npz, x=x, y=y)
    changed = run(["eval", str(out)])
    assert changed.code == 0 and "changed since" in changed.stderr and str(npz.resolve()) in changed.stderr
    sampled = run(["sample", str(out)])
    assert sampled.code == 2 and "not grey-scale images" in sampled.stderr  # vectors, not pictures: said in one line


def test_iw_and_elbo_score_every_observed_node(tmp_path, npz):
    """log p(x, y) = log p(x | z, y) + log p(y): changing only p(y) (its learned logits) moves
    the IW log-likelihood and the ELBO by exactly the mean change of log p(y) (float64, same
    seed, so the same importance samples)."""
    import pyro

    from hiervae.evaluation import evaluate_split
    from hiervae.program import build_program

    graph = build_graph(parse_spec(_spec(tmp_path, "data/measurements.npz").read_text(), file=str(tmp_path / "own.yaml")))
    data = load_data(graph)
    program = build_program(graph).double().eval()
    batch = {k: v[:50].double() for k, v in data.test.items()}
    results = []
    logits = [torch.zeros(3, dtype=torch.float64), torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)]
    for value in logits:
        program.sites["y"].net.const.data.copy_(value)
        pyro.set_rng_seed(0)
        results.append(evaluate_split(program, batch, graph.eval, importance_samples=16, analytic_kl=True))
    labels = batch["y"].argmax(1)
    shift = (torch.log_softmax(logits[1], 0)[labels] - torch.log_softmax(logits[0], 0)[labels]).mean().item()
    assert abs(shift) > 0.1  # the change is visible
    assert results[1].iw_log_likelihood - results[0].iw_log_likelihood == pytest.approx(shift, abs=1e-9)
    assert results[1].elbo - results[0].elbo == pytest.approx(shift, abs=1e-9)
    with pytest.raises(ValueError, match="observes y, x"):
        program.observations(batch["x"])  # a tensor alone is refused for a model with two observed nodes


def test_bind_refuses_unbound_observed_node(tmp_path, npz):
    text = SPEC.replace("arrays: {x: x, y: y}, ", "")
    outcome = run(["check", str(_spec(tmp_path, "data/measurements.npz", text))])
    assert outcome.code == 2 and "is bound to no array: set data.arrays." in outcome.stderr
