"""Per-epoch metrics: device-side accumulation, JSONL log, TensorBoard scalars.

:class:`EpochStats` keeps running sums as tensors on the training device and syncs
once, in :meth:`EpochStats.summary` (or when the progress bar asks for a refresh), so
the step loop never waits for the device.

``metrics.jsonl`` holds one JSON object per line.  ``fit`` writes ``"kind": "epoch"``
lines (see :func:`epoch_record`) and, if it has to stop, one ``"kind": "stopped"``
line; other commands may append their own kinds.  Each epoch line::

    {"kind": "epoch", "epoch": 3, "step": 66, "phase": "warmup", "beta": 0.2, "lr": 0.003,
     "train_elbo": -40.1, "train_loss": 36.2, "train_log_likelihood": -33.0, "train_kl": 7.1,
     "kl_per_latent": {"eps1": 2.5, ...}, "valid_elbo": -39.5, "valid_log_likelihood": -32.8,
     "valid_kl": 6.7, "valid_kl_per_latent": {...}, "nonfinite": 0, "nonfinite_total": 0,
     "seconds": 1.9, "steps_per_s": 11.6}

``epoch`` counts completed epochs (1-based); ELBO, log-likelihood and KL are nats per
data point, with beta = 1 (the true ELBO); ``train_loss`` is the objective actually
minimised (annealed, with free bits).  With 8-bit images dequantised to [0, 1]^D
(``data.dequantize: uniform``) the lines also hold ``train_bits_per_dim`` and
``valid_bits_per_dim``, the ELBOs as ``-(elbo - D log 256) / (D log 2)``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import torch

from hiervae.fileio import atomic_file


class EpochStats:
    """Sums of an epoch's training terms over the steps whose loss and gradients were finite."""

    def __init__(self, latents: Iterable[str], device: torch.device | str):
        self.latents = list(latents)
        zero = lambda *shape: torch.zeros(shape, device=device, dtype=torch.float64)  # noqa: E731
        self.examples = zero()
        self.loss = zero()
        self.log_likelihood = zero()
        self.kl = zero(len(self.latents))
        self.nonfinite = zero()
        self.steps = 0

    def add(self, loss_sum: torch.Tensor, ll_sum: torch.Tensor, kl_sums: torch.Tensor, batch: int, ok: torch.Tensor) -> None:
        """Add one step (all tensors detached; ``ok`` a 0-d bool tensor)."""
        self.steps += 1
        zero = torch.zeros((), device=ok.device, dtype=torch.float64)
        self.examples += torch.where(ok, float(batch), zero)
        self.loss += torch.where(ok, loss_sum.double(), zero)
        self.log_likelihood += torch.where(ok, ll_sum.double(), zero)
        self.kl += torch.where(ok, kl_sums.double(), zero)
        self.nonfinite += (~ok).double()

    def summary(self) -> dict[str, Any]:
        """Per-data-point means (one device sync)."""
        values = torch.cat([torch.stack([self.examples, self.loss, self.log_likelihood, self.nonfinite]), self.kl]).tolist()
        n, loss, ll, nonfinite, kl = values[0], values[1], values[2], values[3], values[4:]
        mean = (lambda v: v / n) if n > 0 else (lambda v: math.nan)
        per_latent = {name: mean(v) for name, v in zip(self.latents, kl)}
        total_kl = mean(sum(kl))
        return {
            "train_elbo": mean(ll) - total_kl,
            "train_loss": mean(loss),
            "train_log_likelihood": mean(ll),
            "train_kl": total_kl,
            "kl_per_latent": per_latent,
            "nonfinite": int(nonfinite),
        }


def epoch_record(**fields: Any) -> dict[str, Any]:
    """An epoch line, keys in a stable order, floats made JSON-safe (NaN/inf -> null)."""
    return {"kind": "epoch", **{k: _json_safe(v) for k, v in fields.items()}}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


class MetricsLog:
    """Append-only JSONL file (``RunDir.metrics``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line of a killed run
                continue
        return records

    def epochs(self) -> list[dict[str, Any]]:
        return [r for r in self.read() if r.get("kind") == "epoch"]

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate(self, completed_epochs: int) -> None:
        """Drop what was logged after the checkpoint (epochs > ``completed_epochs``, stops)."""
        records = self.read()
        keep = [r for r in records if not (r.get("kind") == "epoch" and r.get("epoch", 0) > completed_epochs)
                and r.get("kind") != "stopped"]
        if len(keep) == len(records) and self.path.is_file():
            return
        with atomic_file(self.path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in keep)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


IMAGE_PIXELS = 280  # TensorBoard image grids: the longer side after upscaling, about


class TensorBoard:
    """Per-epoch scalars in ``RunDir.tensorboard`` (x axis: completed epochs)."""

    def __init__(self, logdir: str | Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when training

        self.writer = SummaryWriter(log_dir=str(logdir), purge_step=purge_step)

    def log_epoch(self, record: dict[str, Any]) -> None:
        epoch = record["epoch"]
        add = self.writer.add_scalar
        for key, tag in (("train_elbo", "elbo/train"), ("valid_elbo", "elbo/valid"), ("train_loss", "loss/train"),
                         ("train_log_likelihood", "log_likelihood/train"), ("valid_log_likelihood", "log_likelihood/valid"),
                         ("train_kl", "kl/train"), ("valid_kl", "kl/valid"), ("beta", "schedule/beta"),
                         ("lr", "schedule/lr"), ("nonfinite", "nonfinite_steps"), ("steps_per_s", "speed/steps_per_s")):
            if record.get(key) is not None:
                add(tag, record[key], epoch)
        for split, key in (("train", "kl_per_latent"), ("valid", "valid_kl_per_latent")):
            for name, value in (record.get(key) or {}).items():
                if value is not None:
                    add(f"kl_{split}/{name}", value, epoch)
        self.writer.flush()

    def log_images(self, epoch: int, grids: dict[str, Any]) -> None:
        """Grey-scale grids in [0, 1] (``images/<name>``), x axis: completed epochs."""
        for name, array in grids.items():
            scale = max(1, IMAGE_PIXELS // max(array.shape))  # small images: integer upscaling, no blur
            big = array.repeat(scale, 0).repeat(scale, 1)
            self.writer.add_image(f"images/{name}", big[None], epoch, dataformats="CHW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    @staticmethod
    def clear(logdir: str | Path) -> None:
        """Remove event files of an earlier run (a fresh start in the same directory)."""
        for path in Path(logdir).glob("events.out.tfevents.*"):
            path.unlink(missing_ok=True)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def epoch_line(r: dict[str, Any], total: int) -> str:
    width = len(str(total))
    parts = [f"epoch {r['epoch']:>{width}}/{total}", f"beta {r['beta']:.3g}", f"lr {r['lr']:.2e}",
             f"train elbo {_fmt(r.get('train_elbo'))}", f"kl {_fmt(r.get('train_kl'))}",
             f"valid elbo {_fmt(r.get('valid_elbo'))}"]
    if r.get("valid_bits_per_dim") is not None or r.get("train_bits_per_dim") is not None:
        parts.append(f"bits/dim train {_fmt(r.get('train_bits_per_dim'), '.3f')} valid {_fmt(r.get('valid_bits_per_dim'), '.3f')}")
    if r.get("nonfinite"):
        parts.append(f"skipped {r['nonfinite']} non-finite steps")
    parts.append(f"{r['seconds']:.1f} s")
    return "  ".join(parts)
