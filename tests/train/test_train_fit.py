"""``fit`` end to end on the embedded digits: outputs, learning, exact resume, NaN guard, errors."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch

from hiervae import cli
from hiervae.errors import RunError, SpecError
from hiervae.graph import load_graph
from hiervae.run import RunDir
from hiervae.policy import select_analytic_kl
from hiervae.train import Trainer, fit, trainer as loop

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "specs" / "quickstart.yaml"
IAF_MNIST = REPO / "specs" / "iaf_mnist.yaml"
EPOCH_KEYS = {"kind", "epoch", "step", "phase", "beta", "lr", "train_elbo", "train_loss", "train_log_likelihood", "train_kl",
              "kl_per_latent", "valid_elbo", "valid_log_likelihood", "valid_kl", "valid_kl_per_latent", "nonfinite",
              "nonfinite_total", "seconds", "steps_per_s"}

TINY_IAF = """
name: tiny-iaf
data: {dataset: digits, validation: 200}
model:
  - z: {latent: 4, dist: std_normal}
  - x: {observed: [64], dist: bernoulli, given: [z], net: {mlp: [32]}}
guide:
  - z: {dist: iaf, given: [x], encoders: {x: {mlp: [32], out: 16}}, net: {mlp: [32]}, options: {steps: 1, hidden: [16]}}
train: {batch_size: 128, epochs: 1}
"""


@contextlib.contextmanager
def threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The quickstart spec trained for 3 epochs (shared by several tests: do not modify)."""
    out = tmp_path_factory.mktemp("fit") / "qs3"
    with threads(1):
        result = fit(QUICKSTART, ["train.epochs=3"], out=out, quiet=True)
    return result


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def assert_same_state(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def assert_same_checkpoint(run_a: Path, run_b: Path):
    a, b = RunDir(run_a).load_checkpoint(), RunDir(run_b).load_checkpoint()
    assert_same_state(a["program"], b["program"])
    if "pyro_optim" in a["optimizer"]:  # one optimiser per parameter (pyro engine)
        pa, pb = a["optimizer"]["pyro_optim"], b["optimizer"]["pyro_optim"]
        assert pa.keys() == pb.keys() and pa
        pairs = [(pa[k]["state"], pb[k]["state"]) for k in pa]
        assert all(x["param_groups"] == y["param_groups"] for x, y in zip(pa.values(), pb.values()))
    else:
        pairs = [(a["optimizer"]["state"], b["optimizer"]["state"])]
    for sa, sb in pairs:
        assert sa.keys() == sb.keys()
        for k in sa:
            assert_same_state(sa[k], sb[k])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    for key in ("epoch", "step", "nonfinite", "best_valid_elbo", "valid_elbo"):
        assert a[key] == b[key], key


def epoch_lines(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "steps_per_s")} for r in lines if r["kind"] == "epoch"]


# ---------------------------------------------------------------- a normal run
def test_fit_learns_and_validation_elbo_improves(trained):
    h = trained.history
    assert [r["epoch"] for r in h] == [1, 2, 3] and trained.epochs == 3
    assert h[-1]["valid_elbo"] > h[0]["valid_elbo"]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert trained.valid_elbo == h[-1]["valid_elbo"] and trained.best_valid_elbo == max(r["valid_elbo"] for r in h)
    # linear warm-up over 10 epochs, stepwise: step k of epoch e has beta (e + k/22) / 10;
    # an epoch reports the mean over its 22 steps
    assert [r["beta"] for r in h] == pytest.approx([sum((e + k / 22) / 10 for k in range(22)) / 22 for e in range(3)])
    assert trained.analytic_kl  # quickstart's guide is faithful and Gaussian
    assert trained.step == 3 * 22  # 1397 training digits in batches of 64


def test_fit_writes_the_run_directory(trained):
    run = trained.run
    from hiervae.language import load_spec

    assert run.spec.read_text() == load_spec(QUICKSTART, ["train.epochs=3"]).resolved_yaml()
    state = run.load_checkpoint()
    assert {"program", "optimizer", "epoch", "step", "rng", "nonfinite", "best_valid_elbo"} <= state.keys()
    assert state["epoch"] == 3 and state["step"] == 66 and state["nonfinite"] == {"total": 0, "consecutive": 0}
    assert {"torch", "numpy", "python"} <= state["rng"].keys()
    lines = [json.loads(line) for line in run.metrics.read_text().splitlines()]
    assert len(lines) == 3 and all(set(r) == EPOCH_KEYS for r in lines)
    assert set(lines[0]["kl_per_latent"]) == {"eps1", "eps2", "eps3"}
    assert lines[-1]["train_kl"] == pytest.approx(sum(lines[-1]["kl_per_latent"].values()))
    assert lines[-1]["train_elbo"] == pytest.approx(lines[-1]["train_log_likelihood"] - lines[-1]["train_kl"])
    for name in ("learning_curves.png", "kl_per_latent.png"):
        assert (run.plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(run.tensorboard.glob("events.out.tfevents.*"))
    program = run.load_trained().program  # eval/sample can read it back
    assert not program.training


def test_tensorboard_holds_the_epoch_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained.run.tensorboard))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"elbo/train", "elbo/valid", "schedule/beta", "kl_valid/eps3"} <= tags
    assert [e.step for e in acc.Scalars("elbo/valid")] == [1, 2, 3]
    assert {"images/samples", "images/original_vs_reconstruction"} <= set(acc.Tags()["images"])
    last = acc.Images("images/original_vs_reconstruction")[-1]
    assert last.step == 3 and (last.width, last.height) == (3 * 67, 3 * 71)  # 4 x 8 pairs of 8x8 | 8x8, upscaled


# ---------------------------------------------------------------- resume
@pytest.mark.parametrize("engine", [
    [],
    ["train.engine=pyro", "train.free_bits=0", "train.elbo=trace", "train.optimizer.clip_norm=2"],
    ["train.free_bits=0", "train.elbo=iwae", "train.num_particles=3", "train.dreg=true"],
], ids=["direct", "pyro", "iwae-dreg"])
def test_resume_is_identical_to_an_uninterrupted_run(tmp_path, monkeypatch, engine):
    overrides = ["train.epochs=2", "train.lr_schedule=cosine", "train.optimizer.weight_decay=1e-4", *engine]
    fit(QUICKSTART, overrides, out=tmp_path / "straight", quiet=True)

    original = Trainer.train_epoch

    def killed_in_epoch_2(self, epoch, bar=None):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, bar)

    monkeypatch.setattr(Trainer, "train_epoch", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit(QUICKSTART, overrides, out=tmp_path / "resumed", quiet=True)
    monkeypatch.undo()
    assert RunDir(tmp_path / "resumed").load_checkpoint()["epoch"] == 1
    messages = []
    result = fit(QUICKSTART, overrides, out=tmp_path / "resumed", resume=True, log=messages.append)
    assert result.epochs == 2 and any("resuming" in m and "after epoch 1" in m for m in messages)
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "resumed")
    assert epoch_lines(tmp_path / "straight") == epoch_lines(tmp_path / "resumed")


def test_resume_with_more_epochs_continues_exactly(trained, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["fit", str(QUICKSTART), "--out", out, "--epochs", "2", "-q"]) == 0
    assert cli.main(["fit", str(QUICKSTART), "--out", out, "--epochs", "3", "--resume", "-q"]) == 0
    assert_same_checkpoint(trained.run.path, Path(out))
    assert epoch_lines(trained.run.path) == epoch_lines(Path(out))
    assert (Path(out) / "spec.yaml").read_text() == trained.run.spec.read_text()  # now says epochs: 3


def test_resume_with_fewer_epochs_than_done_is_refused_and_keeps_the_spec(trained, tmp_path, one_line):
    out = tmp_path / "run"
    fit(QUICKSTART, ["train.epochs=2"], out=out, quiet=True)
    before = (out / "spec.yaml").read_text()
    with pytest.raises(RunError) as err:
        fit(QUICKSTART, ["train.epochs=1"], out=out, resume=True, quiet=True)
    assert "has trained 2 epochs already; train.epochs 1 would train none" in one_line(err)
    assert (out / "spec.yaml").read_text() == before


def test_the_best_epoch_is_kept_beside_the_last_and_early_stopping_stops(tmp_path, monkeypatch):
    valids = iter([-30.0, -20.0, -25.0, -26.0, -27.0, -19.0])
    real = Trainer.validate

    def scripted(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        out["valid_elbo"] = next(valids)
        return out

    monkeypatch.setattr(Trainer, "validate", scripted)
    messages = []
    result = fit(QUICKSTART, ["train.epochs=6", "train.early_stopping=3"], out=tmp_path / "run", log=messages.append)
    run = RunDir(tmp_path / "run")
    assert result.epochs == 5 and result.best_valid_elbo == -20.0  # epochs 3, 4, 5 without a better ELBO
    assert run.load_checkpoint(best=True)["epoch"] == 2 and run.load_checkpoint()["epoch"] == 5
    assert any("early stopping after epoch 5" in m and "epoch 2" in m for m in messages)
    stopped = [json.loads(line) for line in run.metrics.read_text().splitlines() if '"stopped"' in line]
    assert stopped == [{"kind": "stopped", "reason": "early_stopping", "epoch": 5, "best_epoch": 2, "patience": 3}]


def test_resume_with_another_spec_is_refused(trained, tmp_path, one_line):
    out = _copy(trained.run.path, tmp_path / "run")
    with pytest.raises(RunError) as err:
        fit(QUICKSTART, ["train.epochs=3", "train.optimizer.lr=0.01"], out=out, resume=True, quiet=True)
    msg = one_line(err)
    assert "train.optimizer.lr" in msg and "0.003" in msg and "0.01" in msg and "--out" in msg
    # the same spec: nothing left to train, the run is reported as it is
    result = fit(QUICKSTART, ["train.epochs=3"], out=out, resume=True, quiet=True)
    assert result.epochs == 3 and result.valid_elbo == trained.valid_elbo and len(result.history) == 3


def test_an_existing_run_is_not_overwritten(trained, tmp_path, one_line):
    out = _copy(trained.run.path, tmp_path / "run")
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(RunError) as err:
        fit(QUICKSTART, ["train.epochs=3"], out=out, quiet=True)
    msg = one_line(err)
    assert "--resume" in msg and "--out" in msg
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_without_checkpoint_starts_a_new_run(tmp_path):
    messages = []
    result = fit(QUICKSTART, ["train.epochs=1"], out=tmp_path / "new", resume=True, log=messages.append)
    assert result.epochs == 1 and any("no checkpoint" in m for m in messages)


# ---------------------------------------------------------------- NaN / inf guard
def _nan_loss(monkeypatch, bad_call):
    calls = {"n": 0}
    real = loop.loss

    def loss(terms, beta, free_bits):
        calls["n"] += 1
        value = real(terms, beta, free_bits)
        return value * float("nan") if bad_call(calls["n"]) else value

    monkeypatch.setattr(loop, "loss", loss)
    return calls


def test_consecutive_non_finite_steps_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch, one_line):
    _nan_loss(monkeypatch, lambda n: n > 30)  # from the 9th step of epoch 2 on
    out = tmp_path / "run"
    with pytest.raises(RunError) as err:
        fit(QUICKSTART, ["train.epochs=3", "train.max_nonfinite_steps=3"], out=out, quiet=True)
    msg = one_line(err)
    assert "epoch 2" in msg and "3 consecutive" in msg and "epoch 1" in msg
    state = RunDir(out).load_checkpoint()
    assert state["epoch"] == 1 and state["step"] == 22
    assert all(torch.isfinite(v).all() for v in state["program"].values() if v.is_floating_point())
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines] == ["epoch", "stopped"] and lines[1]["reason"] == "nonfinite"


def test_isolated_non_finite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    calls = _nan_loss(monkeypatch, lambda n: n % 4 == 0)  # never 3 in a row
    result = fit(QUICKSTART, ["train.epochs=1", "train.max_nonfinite_steps=2"], out=tmp_path / "run", quiet=True)
    assert calls["n"] == 22
    record = result.history[0]
    assert record["nonfinite"] == 5 and record["nonfinite_total"] == 5
    assert math.isfinite(record["train_elbo"]) and math.isfinite(record["valid_elbo"])
    state = result.run.load_checkpoint()
    assert state["nonfinite"]["total"] == 5
    assert all(torch.isfinite(v).all() for v in state["program"].values() if v.is_floating_point())


# ---------------------------------------------------------------- ELBO selection
def test_analytic_kl_where_check_allows_it_else_monte_carlo(tmp_path, one_line):
    assert select_analytic_kl(load_graph(QUICKSTART)) is True
    assert select_analytic_kl(load_graph(QUICKSTART, ["train.elbo=trace"])) is False
    assert select_analytic_kl(load_graph(QUICKSTART, ["train.elbo=mean_field"])) is True
    assert select_analytic_kl(load_graph(IAF_MNIST)) is False  # IAF guide: no closed-form KL
    from hiervae.language import load_spec
    from hiervae.graph import build_graph

    spec = load_spec(IAF_MNIST, ["train.elbo=mean_field"])
    with pytest.raises(SpecError) as err:
        select_analytic_kl(build_graph(spec), spec.source.at(("train", "elbo")))
    msg = one_line(err)
    assert "train.elbo" in msg and "mean_field" in msg


def test_fit_trains_an_iaf_guide_with_the_monte_carlo_elbo(tmp_path, monkeypatch):
    spec = tmp_path / "tiny_iaf.yaml"
    spec.write_text(TINY_IAF)
    seen = set()
    real = loop.elbo_terms

    def spy(program, x, analytic_kl=True):
        seen.add(analytic_kl)
        return real(program, x, analytic_kl)

    monkeypatch.setattr(loop, "elbo_terms", spy)
    result = fit(spec, out=tmp_path / "run", quiet=True, progress=True)
    assert seen == {False} and result.analytic_kl is False
    assert result.run.load_checkpoint()["analytic_kl"] is False
    assert math.isfinite(result.valid_elbo)


# ---------------------------------------------------------------- command line
def test_cli_fit_reports_where_the_outputs_are(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", str(QUICKSTART), "--epochs", "1", "-q"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "quickstart"  # the default --out
    assert (run / "checkpoint.pt").is_file()
    assert "final validation ELBO" in out and "runs/quickstart/metrics.jsonl" in out
    assert "tensorboard --logdir runs/quickstart/tensorboard" in out
    assert "epoch 1/1" not in out  # --quiet


@pytest.mark.parametrize("args,expected", [
    (["--set", "train.nope=1"], "unknown key 'nope'"),
    (["--set", "train.epochs=0"], "train.epochs"),
    (["--set", "model.1.x.observed=[784]"], "784"),
    (["--set", "train.elbo=mean_field", "--set", "guide.0.factors.eps(l).dist=iaf"], "mean_field (analytic KL) is not valid"),
    (["--epochs", "0"], "train.epochs"),
])
def test_cli_fit_bad_input_is_one_line_exit_2(tmp_path, capsys, args, expected):
    rc = cli.main(["fit", str(QUICKSTART), "--out", str(tmp_path / "run"), "-q", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("hiervae fit: error: "), err
    if expected:
        assert expected in err
    assert not (tmp_path / "run").exists()  # nothing written for a bad spec


def test_observed_size_must_match_the_dataset(tmp_path, one_line):
    spec = tmp_path / "wide.yaml"
    spec.write_text(QUICKSTART.read_text().replace("observed: [64]", "observed: [784]"))
    with pytest.raises(SpecError) as err:
        fit(spec, out=tmp_path / "run", quiet=True)
    msg = one_line(err)
    assert "wide.yaml:20: model[1].x" in msg and "'x' has 784 features" in msg and "64" in msg


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_but_unavailable(tmp_path, capsys):
    rc = cli.main(["fit", str(QUICKSTART), "--out", str(tmp_path / "run"), "--device", "cuda", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "CUDA is not available" in err


# ---------------------------------------------------------------- MNIST (real data, slow)
@pytest.mark.slow  # ~10 s: MNIST parsing and 59000 validation examples per epoch
def test_fit_on_a_slice_of_mnist(tmp_path, mnist_dir):
    """The real-data path: 784 features, an offline data directory, no download.
    The quickstart model on the first 1000 MNIST training images (the other 59000 validate)."""
    result = fit(QUICKSTART, ["train.epochs=3", "data.dataset=mnist", "data.validation=59000", "model.1.x.observed=[784]"],
                 out=tmp_path / "run", data_dir=mnist_dir, download=False, quiet=True)
    assert result.epochs == 3 and result.step == 3 * 16
    assert result.history[-1]["valid_elbo"] > result.history[0]["valid_elbo"]
