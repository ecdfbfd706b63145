"""Nothing corrupt is ever saved: a divergent run skips its non-finite steps without touching
the batch-norm running statistics, and a checkpoint never holds a non-finite tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import hiervae.train.trainer as trainer_module
from hiervae.errors import RunError
from hiervae.run import RunDir, nonfinite_tensors
from hiervae.train import fit

QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"
DIVERGENT = ["networks.gauss.batch_norm=true", "networks.decoder.batch_norm=true", "networks.evidence.batch_norm=true",
             "train.optimizer.lr=1.0e+6", "train.max_nonfinite_steps=100000", "train.epochs=2", "train.batch_size=256"]


def test_skipped_steps_leave_the_running_statistics_finite(tmp_path):
    result = fit(QUICKSTART, DIVERGENT, out=tmp_path / "run", quiet=True)
    assert result.history[-1]["nonfinite_total"] > 0  # the run did diverge: steps were skipped
    state = RunDir(tmp_path / "run").load_checkpoint()
    assert nonfinite_tensors(state) == []
    stats = [v for k, v in state["program"].items() if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 4 and all(bool(torch.isfinite(s).all()) for s in stats)


def test_without_the_restore_the_statistics_would_be_poisoned_and_nothing_is_saved(tmp_path, monkeypatch):
    """The guard above is not vacuous: with no running statistics restored, the same run
    poisons them, and the checkpoint is then refused rather than saved."""
    monkeypatch.setattr(trainer_module, "RUNNING_STATISTICS", ())
    with pytest.raises(RunError, match="hold non-finite values"):
        fit(QUICKSTART, DIVERGENT, out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_nonfinite_tensors_names_them():
    state = {"program": {"a": torch.ones(2), "b": torch.tensor([1.0, float("nan")])}, "n": [torch.tensor([float("inf")])],
             "step": torch.tensor(3)}
    assert nonfinite_tensors(state) == ["program.b", "n[0]"]
