"""``fit``: train a spec into a run directory, with checkpoints, metrics and exact resumption.

Orchestration only: load the spec and data, build the program and a
:class:`~hiervae.train.trainer.Trainer`, prepare or resume the run directory
(:mod:`hiervae.train.checkpoint`), then per epoch: train, validate, log
(``metrics.jsonl``, TensorBoard, plots), and save the checkpoint.

Determinism: everything is seeded from ``train.seed`` (``pyro.set_rng_seed``), batch
order and dynamic binarisation come from :class:`hiervae.data.Batches` as functions of
(seed, epoch), the checkpoint holds every RNG state, and validation runs on a forked RNG.
So a run resumed from any epoch's checkpoint on CPU is identical to an uninterrupted one.

Data parallelism (``fit(..., distributed=True)``, ``hiervae fit --nproc N``, torchrun):
the same loop in every process, with the collectives of :mod:`hiervae.train.collectives`;
see docs/distributed.md.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import pyro
import torch
import yaml

import hiervae.train.plots as plots
from hiervae.data.loading import load_data
from hiervae.errors import RunError, SpecError, display_path
from hiervae.evaluation.samples import sample_grids
from hiervae.graph import ModelGraph, build_graph
from hiervae.graph.data_check import NO_DATASET
from hiervae.language import Spec, load_spec
from hiervae.policy import resolve_device, select_objective
from hiervae.program import build_program
from hiervae.run import RunDir
from hiervae.train.checkpoint import forked_rng, prepare_run
from hiervae.train.collectives import World
from hiervae.train.metrics import MetricsLog, TensorBoard, epoch_line, epoch_record
from hiervae.train.mlflow_log import MlflowLog
from hiervae.train.trainer import NonFiniteStop, Trainer

PLOT_EVERY_S = 30.0  # plots (and TensorBoard images) are refreshed at most this often (and at the end)
IMAGES = 32  # samples and reconstruction pairs in the TensorBoard grids
IMAGE_SEED_OFFSET = 2_000_003


@dataclass
class FitResult:
    run: RunDir
    epochs: int  # completed epochs
    step: int
    valid_elbo: float | None
    best_valid_elbo: float | None
    analytic_kl: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    compile_seconds: float | None = None  # train.compile: the first step, compilation included


@contextlib.contextmanager
def _writing(run: RunDir):
    """A file system error while writing the run directory (a full or read-only disk) is one
    line; the last checkpoint written stays whole (:func:`hiervae.fileio.atomic_file`)."""
    try:
        yield
    except OSError as err:
        kept = "the last checkpoint written is kept" if run.checkpoint.is_file() else "no checkpoint was written"
        raise RunError(f"{display_path(run.path)}: cannot write the run directory "
                       f"({err.strerror or err.__class__.__name__}); {kept}") from None


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, disable=not enabled, file=sys.stderr)


def _image_grids(program, data, device: torch.device, seed: int) -> dict:
    """Sample and reconstruction grids of the validation images for TensorBoard, drawn on a
    forked RNG (training's random stream, hence resumption, is untouched)."""
    if data.image_shape is None or len(data.image_shape) != 2 or data.valid.size == 0:
        return {}
    with forked_rng(device, seed + IMAGE_SEED_OFFSET):
        grids = sample_grids(program, data.valid, data.image_shape, n=IMAGES, node=data.image_node)
    return {"samples": grids["samples"], "original_vs_reconstruction": grids["reconstructions"]}


def fit(
    spec_path: str | Path,
    overrides: Iterable[str] = (),
    *,
    out: str | Path | None = None,
    device: str | torch.device = "cpu",
    resume: bool = False,
    data_dir: str | Path | None = None,
    download: bool = True,
    quiet: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    distributed: bool = False,
    mlflow: str | None = None,
) -> FitResult:
    """Train the spec at ``spec_path`` (with ``--set`` style ``overrides``) into a run directory.

    ``out`` defaults to ``runs/<spec name>``.  ``progress`` (a tqdm bar per epoch)
    defaults to "stderr is a terminal and not quiet".  ``log`` receives the per-epoch
    lines (default: print, or nothing when ``quiet``).

    ``distributed=True``: this process is one of ``WORLD_SIZE`` (torchrun's
    environment, or :func:`hiervae.train.launch.launch`); ``device`` is then the
    device type and each process uses ``cuda:LOCAL_RANK`` or the CPU.  Only rank 0
    logs and writes the run directory; every rank returns the same counters and
    validation ELBO, and ``history`` on other ranks holds only this call's epochs.

    ``mlflow``: a tracking URI (``sqlite:///mlflow.db``) to log params, metrics and
    artefacts to (:mod:`hiervae.train.mlflow_log`, the ``mlflow`` extra).
    """
    started = time.perf_counter()
    spec = load_spec(spec_path, overrides)
    graph = build_graph(spec)
    if graph.data.dataset == NO_DATASET:
        raise SpecError("this spec declares no data to train on: set data.dataset (mnist, binarized_mnist, digits, "
                        "cifar10)", spec.source.at(("data", "dataset")))
    train = graph.train
    if train.seed < 0:
        raise SpecError(f"seed must be >= 0, got {train.seed}", spec.source.at(("train", "seed")))
    world: World | None = World.from_env(device) if distributed else None
    try:
        result = _fit(spec, graph, world, started, out=out, device=device, resume=resume, data_dir=data_dir,
                      download=download, quiet=quiet, progress=progress, log=log, mlflow=mlflow)
        if world is not None:
            world.close(synchronize=True)  # every rank done before any tears the group down
        return result
    finally:
        if world is not None:
            world.close()


def _fit(spec: Spec, graph: ModelGraph, world: World | None, started: float, *, out, device, resume, data_dir,
         download, quiet, progress, log, mlflow) -> FitResult:
    main = world is None or world.is_main
    if log is None or not main:
        log = (lambda s: None) if quiet or not main else print
    if progress is None:
        progress = not quiet and sys.stderr.isatty()
    progress = progress and main
    train = graph.train
    dev = world.device if world is not None else resolve_device(device)
    objective = select_objective(graph, spec.source)
    analytic_kl = objective.analytic_kl
    if world is not None and (objective.engine != "direct" or objective.elbo == "iwae"):
        raise RunError("data-parallel training (--nproc, torchrun) runs the direct engine's ELBO: drop "
                       "train.engine: pyro / train.elbo: iwae, or train in one process")
    run = RunDir(out if out is not None else Path("runs") / spec.name)

    if world is not None and world.local_rank != 0:
        world.barrier()  # local rank 0 downloads (if it must) while the others wait
    data = load_data(graph, data_dir=data_dir, download=download)
    if world is not None and world.local_rank == 0:
        world.barrier()
    data = data.place(dev)  # on the device when it fits, else pinned host memory

    pyro.set_rng_seed(train.seed)
    try:
        program = build_program(graph).to(dev)
    except (RuntimeError, MemoryError) as err:  # an allocator's refusal: the model does not fit
        if not isinstance(err, MemoryError) and "alloc" not in str(err).lower() and "out of memory" not in str(err).lower():
            raise
        raise RunError(f"the model's parameters do not fit in {dev.type} memory ({err.__class__.__name__}: "
                       f"{(str(err).splitlines() or [''])[0][:120]}); make it smaller") from None
    if world is not None:
        program = world.prepare(program)
    trainer = Trainer(program, graph, data, device=dev, analytic_kl=analytic_kl, world=world, objective=objective)
    if world is None:
        resume_state = prepare_run(run, spec, resume, log)  # touches the run directory only now
        with _writing(run):
            run.record_data(data.source)
    else:  # rank 0 checks the run directory, every rank gets its verdict and checkpoint
        outcome: tuple[str, Any] = ("ok", None)
        if main:
            try:
                outcome = ("ok", prepare_run(run, spec, resume, log))
                run.record_data(data.source)
            except RunError as err:
                outcome = ("error", str(err))
        outcome = world.broadcast(outcome)
        if outcome[0] == "error":
            raise RunError(outcome[1])
        resume_state = outcome[1]
    metrics = MetricsLog(run.metrics)
    if resume_state is not None:
        trainer.load_checkpoint(resume_state, display_path(run.checkpoint))
        if main:
            metrics.truncate(trainer.state.epoch)
        log(f"resuming {display_path(run.path)} after epoch {trainer.state.epoch} (step {trainer.state.step})")
    history = metrics.epochs() if main else []
    start = trainer.state.epoch
    title = f"{spec.name}"
    if world is not None:
        log(f"data parallel: {world.size} processes, {train.batch_size // world.size} examples each per step "
            f"(global batch {train.batch_size}) on {dev.type}")

    with _writing(run):
        tensorboard = TensorBoard(run.tensorboard, purge_step=start + 1 if start else None) if main else None
    tracker = MlflowLog(mlflow, spec.name, run.path, yaml.safe_load(spec.resolved_yaml()), start) if mlflow and main else None
    last_plot = -math.inf
    stopped: NonFiniteStop | None = None
    early: int | None = None
    try:
        with pyro.validation_enabled(False), _writing(run):
            for epoch in range(start, train.epochs):
                t0 = time.perf_counter()
                bar = _bar(len(trainer.batches), f"epoch {epoch + 1}/{train.epochs}", progress)
                try:
                    summary = trainer.train_epoch(epoch, bar if progress else None)
                except NonFiniteStop as stop:
                    stopped = stop
                    break
                finally:
                    bar.close()
                valid = trainer.validate() if main else {}  # rank 0 alone: the whole split, fixed noise
                if world is not None:
                    valid = world.broadcast(valid)
                seconds = time.perf_counter() - t0
                s = trainer.state
                s.epoch = epoch + 1
                s.valid_elbo = valid.get("valid_elbo")
                improved = s.valid_elbo is not None and math.isfinite(s.valid_elbo) and (
                    s.best_valid_elbo is None or s.valid_elbo > s.best_valid_elbo)
                if improved:
                    s.best_valid_elbo, s.best_epoch = s.valid_elbo, s.epoch
                record = epoch_record(
                    epoch=s.epoch, step=s.step, phase=summary["phase"], beta=summary["beta"], lr=summary["lr"],
                    **{k: summary[k] for k in ("train_elbo", "train_loss", "train_log_likelihood", "train_kl", "kl_per_latent",
                                               "train_bits_per_dim") if k in summary},
                    **valid, nonfinite=summary["nonfinite"], nonfinite_total=s.nonfinite_total,
                    seconds=round(seconds, 3), steps_per_s=round(summary["steps"] / seconds, 2) if seconds > 0 else None,
                )
                history.append(record)
                if not main:
                    continue
                if epoch == start and trainer.compile_seconds is not None:
                    log(f"torch.compile: first step {trainer.compile_seconds:.1f} s (compilation; cached for later steps and epochs)")
                    metrics.append({"kind": "compile", "epoch": s.epoch, "first_step_s": round(trainer.compile_seconds, 3)})
                metrics.append(record)
                tensorboard.log_epoch(record)
                if tracker is not None:
                    tracker.log_epoch(record)
                state = trainer.checkpoint({"spec_name": spec.name})
                run.save_checkpoint(state)
                if improved:  # the best epoch by validation ELBO, beside the last
                    run.save_checkpoint(state, best=True)
                log(epoch_line(record, train.epochs))
                patience = train.early_stopping
                if patience is not None and s.best_epoch and s.epoch - s.best_epoch >= patience:
                    early = s.epoch
                    metrics.append({"kind": "stopped", "reason": "early_stopping", "epoch": s.epoch,
                                    "best_epoch": s.best_epoch, "patience": patience})
                    log(f"early stopping after epoch {s.epoch}: no better validation ELBO in {patience} epochs "
                        f"(best {s.best_valid_elbo:.4f} at epoch {s.best_epoch}, kept in {display_path(run.best_checkpoint)})")
                    break
                last = epoch + 1 == train.epochs
                if last or time.monotonic() - last_plot >= PLOT_EVERY_S:
                    plots.write_plots(history, run.plots, title)
                    tensorboard.log_images(s.epoch, _image_grids(program, data, dev, train.seed))
                    last_plot = time.monotonic()
    finally:
        if tensorboard is not None:
            tensorboard.close()
    if main and history and (stopped is not None or early is not None or start >= train.epochs):
        with _writing(run):
            plots.write_plots(history, run.plots, title)
    if tracker is not None:
        tracker.close("FAILED" if stopped is not None else "FINISHED")
    if stopped is not None:
        if main:
            metrics.append({"kind": "stopped", "reason": "nonfinite", "epoch": stopped.epoch + 1, "step": stopped.step,
                            "max_nonfinite_steps": train.max_nonfinite_steps})
        kept = (f"{display_path(run.checkpoint)} keeps the state after epoch {trainer.state.epoch}"
                if trainer.state.epoch else "no checkpoint was written")
        raise RunError(f"stopped in epoch {stopped.epoch + 1} (step {stopped.step}): {train.max_nonfinite_steps} consecutive steps "
                       f"had a non-finite loss or gradient and were skipped; {kept}; try a lower train.optimizer.lr")
    s = trainer.state
    return FitResult(run=run, epochs=s.epoch, step=s.step, valid_elbo=s.valid_elbo, best_valid_elbo=s.best_valid_elbo,
                     analytic_kl=analytic_kl, history=history, seconds=time.perf_counter() - started,
                     compile_seconds=trainer.compile_seconds)
