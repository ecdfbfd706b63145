"""fit --mlflow: params, per-epoch metrics and artefacts in a real local MLflow store
(sqlite, offline); a resumed fit is a second MLflow run of the same run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hiervae.cli import main

mlflow = pytest.importorskip("mlflow")
QUICKSTART = Path(__file__).resolve().parents[2] / "specs" / "quickstart.yaml"


def test_fit_logs_params_metrics_and_artefacts_to_mlflow(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    assert main(["fit", str(QUICKSTART), "--epochs", "2", "-o", str(out), "-q", "--mlflow", uri]) == 0
    assert main(["fit", str(QUICKSTART), "--epochs", "3", "-o", str(out), "-q", "--resume", "--mlflow", uri]) == 0
    client = mlflow.tracking.MlflowClient(uri)
    experiment = client.get_experiment_by_name("quickstart")
    runs = sorted(client.search_runs([experiment.experiment_id]), key=lambda r: int(r.data.tags["hiervae.start_epoch"]))
    assert [r.data.tags["hiervae.start_epoch"] for r in runs] == ["0", "2"]
    assert all(r.info.status == "FINISHED" and r.data.tags["hiervae.run_dir"] == str(out.resolve()) for r in runs)
    first = runs[0]
    assert first.data.params["train.optimizer.lr"] == "0.003" and first.data.params["train.epochs"] == "2"
    history = client.get_metric_history(first.info.run_id, "valid_elbo")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(m.step, m.value) for m in history] == [(r["epoch"], r["valid_elbo"]) for r in lines[:2]]
    assert [m.step for m in client.get_metric_history(runs[1].info.run_id, "valid_elbo")] == [3]
    assert "kl_per_latent.eps3" in first.data.metrics
    artefacts = {a.path for a in client.list_artifacts(first.info.run_id)}
    assert {"spec.yaml", "metrics.jsonl", "plots"} <= artefacts
    assert (tmp_path / "mlflow-artifacts").is_dir()  # beside the database, not in the working directory


def test_an_unusable_store_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    code = main(["fit", str(QUICKSTART), "--epochs", "1", "-o", str(tmp_path / "run"), "-q",
                 "--mlflow", f"sqlite:///{tmp_path / 'file' / 'm.db'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("hiervae fit: error: --mlflow sqlite:///") and "\n" not in err
