"""A run directory: what ``fit`` writes and ``eval`` / ``sample`` read.

Layout::

    RUN/spec.yaml          the resolved spec (overrides applied): the run's source of truth
    RUN/checkpoint.pt      latest state, written atomically (temp file + os.replace)
    RUN/metrics.jsonl      one JSON object per line (epochs, compile time, a stop)
    RUN/eval_SPLIT.json    the last `hiervae eval` of a split
    RUN/tensorboard/       TensorBoard event files
    RUN/plots/             learning curves and per-layer KL (PNG)

A run killed at any point leaves either the previous or the new checkpoint, never a
torn one, so ``fit --resume`` can always continue.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hiervae.errors import RunError, display_path
from hiervae.fileio import atomic_file, atomic_write_text, stale_temporaries
from hiervae.graph import load_graph
from hiervae.policy import select_analytic_kl
from hiervae.program import build_program


@dataclass(frozen=True)
class Trained:
    graph: Any
    program: Any
    analytic_kl: bool


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    spec = property(lambda self: self.path / "spec.yaml")
    checkpoint = property(lambda self: self.path / "checkpoint.pt")
    best_checkpoint = property(lambda self: self.path / "best.pt")  # the epoch with the best validation ELBO
    metrics = property(lambda self: self.path / "metrics.jsonl")
    tensorboard = property(lambda self: self.path / "tensorboard")
    plots = property(lambda self: self.path / "plots")
    data_record = property(lambda self: self.path / "data.json")

    def require(self) -> "RunDir":
        """Check that this is a finished-or-running run directory (for eval/sample)."""
        shown = display_path(self.path)
        if not self.path.is_dir():
            raise RunError(f"{shown}: no such run directory")
        if not self.spec.is_file():
            raise RunError(f"{shown}: not a run directory (no spec.yaml; create one with `hiervae fit`)")
        if not self.checkpoint.is_file():
            raise RunError(f"{shown}: no checkpoint.pt yet (has `hiervae fit` finished an epoch?)")
        return self

    def save_checkpoint(self, state: dict[str, Any], best: bool = False) -> None:
        """Atomically, and only a state whose every floating tensor is finite (``best``: as
        ``best.pt``)."""
        path = self.best_checkpoint if best else self.checkpoint
        bad = nonfinite_tensors(state)
        if bad:
            raise RunError(f"not saving {display_path(path)}: {', '.join(bad[:3])} hold non-finite values"
                           f"{' (and more)' if len(bad) > 3 else ''}; the previous checkpoint is kept")
        try:
            atomic_torch_save(state, path)
        except OSError as err:
            raise RunError(f"cannot write {display_path(path)} ({err.strerror or err}); "
                           f"the previous checkpoint is kept") from None

    def remove_stale_temporaries(self) -> list[Path]:
        """Temporary checkpoint files a killed save left behind (the checkpoint itself is whole)."""
        stale = stale_temporaries(self.checkpoint)
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def load_checkpoint(self, map_location: str | torch.device = "cpu", best: bool = False) -> dict[str, Any]:
        """The checkpoint (``best``: ``best.pt``), read with ``weights_only=True``: tensors and
        plain values only, so a file that names any other object (a planted pickle payload)
        is refused, never run."""
        path = self.best_checkpoint if best else self.checkpoint
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise RunError(f"{display_path(path)}: no checkpoint") from None
        except Exception as err:  # a corrupt or foreign file: say which, not a traceback
            first = (str(err).strip().splitlines() or [""])[0][:200]
            raise RunError(f"{display_path(path)}: unreadable checkpoint, or one that holds more than "
                           f"tensors and plain values ({err.__class__.__name__}: {first})") from None
        if not isinstance(state, dict) or not isinstance(state.get("program"), dict):
            raise RunError(f"{display_path(path)}: not a hiervae checkpoint (no program state)")
        return state

    def record_data(self, source: dict | None) -> None:
        """Where the data came from (a user's files and their sha256), beside the spec."""
        if source:
            atomic_write_text(self.data_record, json.dumps(source, indent=2) + "\n")

    def warn_if_data_changed(self, source: dict | None, warn) -> None:
        """Say (through ``warn``) when the files a run was trained on have changed since."""
        try:
            recorded = json.loads(self.data_record.read_text())
        except (OSError, ValueError):
            return
        if not source or not isinstance(recorded, dict):
            return
        changed = [split for split, digest in (source.get("sha256") or {}).items()
                   if (recorded.get("sha256") or {}).get(split) not in (None, digest)]
        if changed:
            warn(f"warning: {', '.join(source['files'][s] for s in changed)} changed since "
                 f"{display_path(self.path)} was trained (sha256 differs from {display_path(self.data_record)})")

    def load_graph(self):
        return load_graph(self.spec)

    def load_trained(self, device: str | torch.device = "cpu", best: bool = False) -> "Trained":
        """The graph, the program with the checkpoint's weights (in eval mode; ``best``: the
        best epoch's) and the run's analytic-KL decision (the one ``fit`` trained with)."""
        graph = self.load_graph()
        program = build_program(graph).to(device)
        state = self.load_checkpoint(map_location=device, best=best)
        try:
            program.load_state_dict(state["program"])
        except (KeyError, RuntimeError, TypeError, AttributeError) as err:
            raise RunError(f"{display_path(self.checkpoint)}: does not match {display_path(self.spec)} ({str(err).splitlines()[0]})") from None
        analytic = state.get("analytic_kl") if isinstance(state, dict) else None
        analytic = select_analytic_kl(graph) if not isinstance(analytic, bool) else analytic
        return Trained(graph, program.eval(), analytic)


def nonfinite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in ``state`` (nested dicts/lists) with a NaN or inf."""
    if isinstance(state, torch.Tensor):
        return [prefix or "tensor"] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        return [n for k, v in state.items() for n in nonfinite_tensors(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(state, (list, tuple)):
        return [n for i, v in enumerate(state) for n in nonfinite_tensors(v, f"{prefix}[{i}]")]
    return []


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`hiervae.fileio.atomic_file`."""
    with atomic_file(path) as f:
        torch.save(obj, f)
