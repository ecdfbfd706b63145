"""Optional MLflow logging of a ``fit`` (``hiervae fit --mlflow URI``, the ``mlflow`` extra).

One MLflow run per ``fit`` call in the experiment named after the spec: the resolved spec's
settings as params (dotted keys), every epoch's numeric figures as metrics (step: the
completed epoch), and at the end the run directory's spec, metrics and plots as
artefacts.  A local store works offline (``sqlite:///mlflow.db``: artefacts beside the
database, under ``mlflow-artifacts/``).  ``--resume`` starts a new MLflow run tagged with
the same run directory, from the epoch it resumes at.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from hiervae.errors import RunError

try:
    import mlflow
except ImportError:  # the optional extra is not installed
    mlflow = None

MAX_PARAM = 500  # characters of a param value MLflow stores


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: str(value)[:MAX_PARAM]}


def _artifact_root(uri: str) -> str | None:
    """For a local sqlite store, artefacts beside the database (MLflow's default is ./mlruns)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlflow-artifacts").as_uri()
    return None


class MlflowLog:
    def __init__(self, uri: str, experiment: str, run_dir: Path, spec: dict[str, Any], start_epoch: int):
        if mlflow is None:
            raise RunError("--mlflow needs MLflow: pip install 'hiervae[mlflow]'")
        try:
            self.client = mlflow.tracking.MlflowClient(uri)
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(
                experiment, artifact_location=_artifact_root(uri))
            self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name, tags={
                "hiervae.run_dir": str(run_dir.resolve()), "hiervae.start_epoch": str(start_epoch)}).info.run_id
        except Exception as err:  # an unreachable or malformed store: one line, training not started
            raise RunError(f"--mlflow {uri}: {err.__class__.__name__}: {(str(err).splitlines() or [''])[0][:200]}") from None
        self.run_dir = run_dir
        params = _flatten({k: spec[k] for k in ("name", "vars", "data", "train", "eval") if k in spec})
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            batch = list(params.items())[i:i + 100]
            self.client.log_batch(self.run_id, params=[mlflow.entities.Param(k, v) for k, v in batch])

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Every finite number of an epoch line (per-latent KL as ``kl_per_latent.eps3``)."""
        step, now = int(record["epoch"]), int(time.time() * 1000)
        values: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, dict):
                values.update({f"{key}.{k}": v for k, v in value.items()})
            elif key not in ("epoch", "kind"):
                values[key] = value
        metrics = [mlflow.entities.Metric(k, float(v), now, step) for k, v in values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, status: str = "FINISHED") -> None:
        for name in ("spec.yaml", "metrics.jsonl", "data.json"):
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        if (self.run_dir / "plots").is_dir():
            self.client.log_artifacts(self.run_id, str(self.run_dir / "plots"), "plots")
        self.client.set_terminated(self.run_id, status)
