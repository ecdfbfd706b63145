"""What a checkpoint holds, how a run directory is resumed, and the RNG state that makes it exact.

A checkpoint (``RUN/checkpoint.pt``, written atomically by :class:`hiervae.run.RunDir`) is
a dict of tensors and plain values only, so that loading it runs no code::

    version, program (state dict), optimizer (state dict), epoch, step, rng (every RNG
    state), nonfinite {total, consecutive}, best_valid_elbo, valid_elbo, analytic_kl, spec_name

:func:`prepare_run` checks a run directory before training: a fresh run writes the
resolved spec; ``--resume`` accepts the same spec up to :data:`RESUME_MAY_CHANGE`.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Callable, Iterable

import numpy as np
import torch
import yaml

from hiervae.data import own
from hiervae.errors import RunError, display_path
from hiervae.fileio import atomic_write_text
from hiervae.language import Spec
from hiervae.language import schema as S
from hiervae.run import RunDir
from hiervae.train.metrics import MetricsLog, TensorBoard

CHECKPOINT_VERSION = 1
RESUME_MAY_CHANGE = (("train", "epochs"), ("train", "early_stopping"), ("data", "data_dir"))
"""Keys of the resolved spec that may change on ``--resume`` (anything else, the learning
rate included, is refused: a changed spec is a new run, ``--out DIR``)."""


def forked_rng(device: torch.device, seed: int):
    """A block on its own random stream (``seed``) that leaves the training stream, CPU and
    this device's, as it was: validation noise and image grids, never in a checkpoint."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    fork = torch.random.fork_rng(devices=devices)

    @contextlib.contextmanager
    def block():
        with fork:
            torch.manual_seed(seed)
            yield

    return block()


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG state, as tensors and plain values only (a checkpoint loads with
    ``weights_only=True``: no pickled object, so loading one never runs code)."""
    cuda = device.type == "cuda"
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda else None,
        "cuda_device": (torch.cuda.current_device() if device.index is None else device.index) if cuda else None,
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any], device: torch.device, replica: bool = False) -> None:
    """``replica``: one process of several, each on its own GPU: continue the saved
    training device's CUDA stream on this process's device (all ranks draw the same)."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        if replica:
            saved = state["cuda"][state.get("cuda_device") or 0]
            torch.cuda.set_rng_state(saved.cpu(), device)
        else:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])


def _first_difference(a: Any, b: Any, path: tuple = ()) -> tuple[tuple, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return path + (key,), a.get(key, "<absent>"), b.get(key, "<absent>")
            found = _first_difference(a[key], b[key], path + (key,))
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, path + (i,))
            if found:
                return found
        return None
    return None if a == b else (path, a, b)


def _without(data: Any, keys: Iterable[tuple[str, ...]]) -> Any:
    data = yaml.safe_load(yaml.safe_dump(data))  # a normalised deep copy
    for key in keys:
        target = data
        for part in key[:-1]:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target.pop(key[-1], None)
    return data


def _resolved(spec: Spec) -> str:
    """The spec the run directory keeps: overrides applied, a user's data files by absolute path."""
    return spec.resolved_yaml(own.anchored(spec.data.get("data") or {}, spec.directory))


def prepare_run(run: RunDir, spec: Spec, resume: bool, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Check the run directory; returns the checkpoint to resume from, or None (fresh).
    Any file system problem (a path under a file, a link loop, a read-only or full disk) is
    one line, a RunError."""
    try:
        return _prepare_run(run, spec, resume, log)
    except OSError as err:
        raise RunError(f"{display_path(run.path)}: cannot use it as the run directory "
                       f"({err.strerror or err.__class__.__name__}{': ' + err.filename if err.filename else ''})") from None


def _prepare_run(run: RunDir, spec: Spec, resume: bool, log: Callable[[str], None]) -> dict[str, Any] | None:
    shown = display_path(run.path)
    if run.path.exists() and not run.path.is_dir():
        raise RunError(f"{shown}: exists and is not a directory; choose another --out")
    has_checkpoint = run.checkpoint.is_file()
    if has_checkpoint and not resume:
        raise RunError(f"{shown} already holds a trained run (checkpoint.pt); pass --resume to continue it, or --out DIR for a new run")
    if has_checkpoint:
        for stale in run.remove_stale_temporaries():
            log(f"removed {display_path(stale)}, left by a save that was interrupted (the checkpoint is whole)")
        if not run.spec.is_file():
            raise RunError(f"{shown}: has a checkpoint but no spec.yaml, cannot check that --resume uses the same spec")
        try:
            saved = yaml.safe_load(run.spec.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise RunError(f"{display_path(run.spec)}: unreadable ({err.__class__.__name__})") from None
        current = yaml.safe_load(_resolved(spec))
        diff = _first_difference(_without(saved, RESUME_MAY_CHANGE), _without(current, RESUME_MAY_CHANGE))
        if diff is not None:
            key = ".".join(str(p) for p in diff[0]) or "(document)"
            raise RunError(f"--resume: the spec differs from the run's {display_path(run.spec)} at {key} "
                           f"({diff[1]!r} in the run, {diff[2]!r} now); resume with the same spec and --set, or use --out DIR for a new run")
        state = run.load_checkpoint(map_location="cpu")
        done, epochs = state.get("epoch"), (current.get("train") or {}).get("epochs", S.TrainSpec().epochs)
        if isinstance(done, int) and epochs < done:
            raise RunError(f"--resume: {shown} has trained {done} epochs already; train.epochs {epochs} would train "
                           f"none (give more than {done} to train longer)")
        if saved != current:  # only train.epochs / data.data_dir changed: the spec on disk follows
            atomic_write_text(run.spec, _resolved(spec))
        return state
    if resume:
        log(f"{shown}: no checkpoint to resume, starting a new run")
    run.path.mkdir(parents=True, exist_ok=True)
    run.remove_stale_temporaries()
    atomic_write_text(run.spec, _resolved(spec))
    MetricsLog(run.metrics).clear()
    TensorBoard.clear(run.tensorboard)
    return None
