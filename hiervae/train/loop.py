"""``fit``: train a compiled spec, with checkpoints, metrics and exact resumption.

One step is ``terms = elbo_terms(program, x, analytic_kl)``, then
``loss(terms, beta, free_bits) / batch`` backward and one fused Adam step over
``program.parameters()``; beta is a 0-d tensor on the device.  With ``train.compile:
true`` that loss is compiled with ``torch.compile`` (:func:`hiervae.program.compile_loss`: one
graph, compiled on the first step, whose time is logged and written to the metrics as
a ``"kind": "compile"`` line; annealing never recompiles; validation stays eager).  Nothing in the step
loop waits for the device: metrics accumulate as tensors (one sync per epoch, plus
the progress bar's refreshes), a step with a non-finite loss or gradient is skipped
on the device (fused Adam's ``found_inf``), and the run of consecutive skipped steps
is checked every ``train.max_nonfinite_steps`` steps.

Devices and precision: the data is kept on the device when it fits and batches are
binarised there (:meth:`hiervae.data.DataSplits.place`, :class:`hiervae.data.Batches`);
``train.precision: bf16`` runs the networks' matmuls under bf16 autocast with the
objective in float32 (:mod:`hiervae.nn.precision`); validation stays fp32.  The step
has no host syncs (``tests/train/test_train_device.py`` makes every sync raise).

Determinism: everything is seeded from ``train.seed`` (``pyro.set_rng_seed``), batch
order and dynamic binarisation come from :class:`hiervae.data.Batches` as functions of
(seed, epoch), the checkpoint holds every RNG state, and validation runs on a forked
RNG with a fixed seed (the same noise every epoch, and no effect on training).  So a
run resumed from any epoch's checkpoint on CPU is identical to an uninterrupted one.

Data parallelism (``fit(..., distributed=True)``, ``hiervae fit --nproc N``, torchrun):
the same loop in every process, with the hooks of :mod:`hiervae.train.distributed`
(a shard of each global batch, gradients averaged after ``backward``, rank-0-only
validation and writing); see that module and docs/distributed.md.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pyro
import torch
import yaml

from hiervae.program import Program, build_program, compile_loss, elbo_terms, loss
from hiervae.data import Batches, DataSplits, load_dataset
from hiervae.errors import RunError, SpecError, display_path
from hiervae.evaluation.metrics import pixel_dims
from hiervae.graph import ModelGraph, build_graph
from hiervae.graph.faithfulness import check
from hiervae.nn.flows import bits_per_dim
from hiervae.nn.precision import network_precision
from hiervae.run import RunDir
from hiervae.language import Spec, load_spec
from hiervae.train import plots
from hiervae.train.metrics import EpochStats, MetricsLog, TensorBoard, epoch_record
from hiervae.train.optim import grads_finite, make_optimizer, set_lr, step_unless
from hiervae.train.schedules import BetaPlan, LRSchedule, beta_schedule, lr_schedule

if TYPE_CHECKING:
    from hiervae.train.distributed import World

CHECKPOINT_VERSION = 1
VALID_SEED_OFFSET = 1_000_003  # validation noise: torch.manual_seed(train.seed + this)
VALID_BATCH = 1000
PLOT_EVERY_S = 30.0  # plots are refreshed at most this often (and at the end)
BAR_REFRESH_S = 0.5
# keys of the resolved spec that may change on --resume
RESUME_MAY_CHANGE = (("train", "epochs"), ("data", "data_dir"))


# ---------------------------------------------------------------- set-up helpers
def resolve_device(name: str | torch.device) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise RunError(f"--device {name}: CUDA is not available ({why}); use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RunError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
    if device.type not in ("cpu", "cuda"):
        raise RunError(f"--device {name}: only cpu and cuda are supported")
    return device


def select_analytic_kl(graph: ModelGraph, spec: Spec | None = None) -> bool:
    """``train.elbo``: mean_field -> analytic KL (refused where invalid), trace -> Monte
    Carlo, auto -> analytic exactly when ``hiervae check`` says it is valid."""
    mode = graph.train.elbo
    if mode == "trace":
        return False
    report = check(graph, max_suggestions=0)
    if mode == "mean_field" and not report.analytic_kl:
        why = "; ".join(report.mean_field_problems) or "a guide/prior family pair has no closed-form KL"
        where = spec.source.at(("train", "elbo")) if spec is not None else None
        raise SpecError(f"mean_field (analytic KL) is not valid for this model ({why}); use auto or trace", where)
    return report.analytic_kl


def check_data_matches(graph: ModelGraph, splits: DataSplits) -> None:
    obs = graph.nodes[graph.observed[0]]
    features = int(np.prod(splits.event_shape))
    if obs.dim != features:
        h, w = splits.image_shape
        raise SpecError(
            f"observed node {obs.name!r} has {obs.dim} features but dataset {splits.name!r} has {features} "
            f"per example ({h}x{w} images): set `observed: [{features}]`", obs.location)
    if obs.options.get("logit_alpha") is not None and not splits.dequantized:
        # logit(alpha + (1 - alpha) v) is infinite at v = 1 (a white pixel), and a density
        # fitted to pixels on a grid is unbounded: the flow needs dequantised values
        raise SpecError(f"observed node {obs.name!r} models dequantised pixels (logit_alpha) but the data are not "
                        f"dequantised: set data.dequantize: uniform", obs.location)


def _rng_state(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda else None,
        "cuda_device": (torch.cuda.current_device() if device.index is None else device.index) if cuda else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device, replica: bool = False) -> None:
    """``replica``: one process of several, each on its own GPU: continue the saved
    training device's CUDA stream on this process's device (all ranks draw the same)."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        if replica:
            saved = state["cuda"][state.get("cuda_device") or 0]
            torch.cuda.set_rng_state(saved.cpu(), device)
        else:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    np.random.set_state(state["numpy"])
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


# ---------------------------------------------------------------- the trainer
class NonFiniteStop(Exception):
    def __init__(self, epoch: int, step: int):
        self.epoch, self.step = epoch, step


@dataclass
class TrainState:
    """What a checkpoint holds besides the weights and the optimiser."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimiser steps attempted (skipped ones included)
    nonfinite_total: int = 0
    nonfinite_streak: int = 0  # consecutive non-finite steps at the end of the last epoch
    best_valid_elbo: float | None = None
    valid_elbo: float | None = None


class Trainer:
    """The training loop of one program on one device (the spec's ``train:`` section).

    With ``world`` (a :class:`hiervae.train.distributed.World` of several processes)
    this is one replica: it trains on its shard of each global batch of
    ``train.batch_size`` and averages gradients with the other ranks every step.
    """

    def __init__(self, program: Program, graph: ModelGraph, splits: DataSplits, *, device: torch.device,
                 analytic_kl: bool, optimizer: torch.optim.Optimizer | None = None, world: World | None = None):
        self.program, self.graph, self.splits, self.device = program, graph, splits, device
        self.world = world
        self.train_spec = graph.train
        self.analytic_kl = analytic_kl
        self.free_bits = float(self.train_spec.free_bits)
        self.pixel_dims = pixel_dims(graph)  # D: ELBOs are also reported in bits/dim
        self.params = [p for p in program.parameters() if p.requires_grad]
        self.optimizer = optimizer or make_optimizer(self.params, self.train_spec.optimizer)
        self.betas: BetaPlan = beta_schedule(self.train_spec)
        self.lrs: LRSchedule = lr_schedule(self.train_spec)
        bs = self.train_spec.batch_size
        n = len(splits.train)
        w = world.size if world is not None else 1
        if bs % w:
            raise RunError(f"train.batch_size {bs} is the global batch and must be divisible by the {w} processes")
        self.batches = Batches(splits.train, bs // w, seed=self.train_spec.seed, binarize=splits.dynamic,
                               dequantize=splits.dequantized,
                               rank=world.rank if world is not None else 0, world_size=w, device=device,
                               drop_last=n > bs and (n % bs) // w == 1)  # a batch of one breaks batch norm
        self.beta = torch.zeros((), device=device)
        self.state = TrainState()
        self._streak = torch.zeros((), dtype=torch.int64, device=device)
        self._worst = torch.zeros((), dtype=torch.int64, device=device)
        objective = self._objective
        if self.train_spec.compile:  # train.compile: the trace-free loss, one graph; eval stays eager
            objective = compile_loss(objective, program, analytic_kl)
        self.objective = objective
        self.compile_seconds: float | None = None  # first compiled step (compilation included)

    # ------------------------------------------------------------ one step
    def _objective(self, x: torch.Tensor, beta: torch.Tensor):
        """(loss per example, sum of log-likelihoods, per-latent sums of KL)."""
        if self.world is None:
            terms = elbo_terms(self.program, x, self.analytic_kl)
            value = loss(terms, beta, self.free_bits) / x.shape[0]
        else:
            with self.world.sharded_noise():
                terms = elbo_terms(self.program, x, self.analytic_kl)
            value = self.world.loss(terms, beta, self.free_bits) / x.shape[0]
        kl = torch.stack([k.detach().sum() for k in terms.kl.values()]) if terms.kl else terms.log_likelihood.new_zeros(0)
        return value, terms.log_likelihood.detach().sum(), kl

    def train_step(self, x: torch.Tensor, stats: EpochStats) -> None:
        first_compiled = self.train_spec.compile and self.compile_seconds is None
        started = time.perf_counter() if first_compiled else 0.0
        with network_precision(self.program, self.train_spec.precision, self.device.type):
            value, ll, kl = self.objective(x, self.beta)
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        checked = value if self.world is None else self.world.average_gradients(self.params, value)
        ok = grads_finite(self.params, checked)
        step_unless(self.optimizer, ok)
        stats.add(value.detach() * x.shape[0], ll, kl, x.shape[0], ok)
        self._streak = torch.where(ok, torch.zeros_like(self._streak), self._streak + 1)
        self._worst = torch.maximum(self._worst, self._streak)
        self.state.step += 1
        if first_compiled:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_seconds = time.perf_counter() - started

    def _check_nonfinite(self, epoch: int) -> None:
        if int(self._worst) >= self.train_spec.max_nonfinite_steps:
            raise NonFiniteStop(epoch, self.state.step)

    # ------------------------------------------------------------ epochs
    def epoch_settings(self, epoch: int) -> tuple[float, float]:
        """(beta, lr) of epoch ``epoch``: beta is the mean over its steps (a stepwise
        warm-up changes it at every step, see :meth:`BetaPlan.at_step`)."""
        return _mean(self.betas.epoch_betas(epoch, max(len(self.batches), 1))), self.lrs(epoch)

    def train_epoch(self, epoch: int, bar=None) -> dict[str, Any]:
        """Train epoch ``epoch`` (0-based); returns the epoch's training summary.

        ``beta`` of the summary is the mean of the betas its steps used."""
        betas = self.betas.epoch_betas(epoch, max(len(self.batches), 1))
        beta, lr = _mean(betas), self.lrs(epoch)
        set_lr(self.optimizer, lr)
        self.program.train()
        stats = EpochStats(self.program.latents, self.device)
        self._worst.copy_(self._streak)
        every = self.train_spec.max_nonfinite_steps
        last_refresh = time.monotonic()
        for k, x in enumerate(self.batches.epoch(epoch)):
            if k == 0 or betas[k] != betas[k - 1]:
                self.beta.fill_(betas[k])  # a device-side fill: no host sync
            self.train_step(x, stats)
            if (k + 1) % every == 0:
                self._check_nonfinite(epoch)
            if bar is not None:
                bar.update(1)
                now = time.monotonic()
                if now - last_refresh >= BAR_REFRESH_S:
                    last_refresh = now
                    s = stats.summary()
                    bar.set_postfix(elbo=f"{s['train_elbo']:.2f}", kl=f"{s['train_kl']:.2f}", beta=f"{betas[k]:.3g}", refresh=False)
        self._check_nonfinite(epoch)
        if self.world is not None:
            self.world.sum_stats(stats)
            self.world.average_buffers(self.program)
        summary = stats.summary()
        if self.pixel_dims:
            summary["train_bits_per_dim"] = bits_per_dim(summary["train_elbo"], self.pixel_dims)
        self.state.nonfinite_total += summary["nonfinite"]
        self.state.nonfinite_streak = int(self._streak)
        return {"beta": beta, "lr": lr, "phase": self.betas.phase(epoch), "steps": stats.steps, **summary}

    @torch.no_grad()
    def validate(self, data: torch.Tensor | None = None, batch_size: int = VALID_BATCH) -> dict[str, Any]:
        """ELBO and per-latent KL on the fixed validation split, eval mode, fixed noise."""
        data = self.splits.valid if data is None else data
        if len(data) == 0:
            return {}
        was_training = self.program.training
        self.program.eval()
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if self.device.type == "cuda" else []
        ll_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        kl_sum = torch.zeros(len(self.program.latents), dtype=torch.float64, device=self.device)
        try:
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.train_spec.seed + VALID_SEED_OFFSET)
                for chunk in data.split(batch_size):
                    chunk = chunk.to(self.device, non_blocking=True)  # host-resident data (DataSplits.place)
                    terms = elbo_terms(self.program, chunk, self.analytic_kl)
                    ll_sum += terms.log_likelihood.double().sum()
                    if terms.kl:
                        kl_sum += torch.stack([k.double().sum() for k in terms.kl.values()])
        finally:
            self.program.train(was_training)
        values = torch.cat([ll_sum[None], kl_sum]).div(len(data)).tolist()
        ll, kl = values[0], values[1:]
        out = {
            "valid_elbo": ll - sum(kl),
            "valid_log_likelihood": ll,
            "valid_kl": sum(kl),
            "valid_kl_per_latent": dict(zip(self.program.latents, kl)),
        }
        if self.pixel_dims:
            out["valid_bits_per_dim"] = bits_per_dim(out["valid_elbo"], self.pixel_dims)
        return out

    # ------------------------------------------------------------ checkpoints
    def checkpoint(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        s = self.state
        return {
            "version": CHECKPOINT_VERSION,
            "program": self.program.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": s.epoch,
            "step": s.step,
            "rng": _rng_state(self.device),
            "nonfinite": {"total": s.nonfinite_total, "consecutive": s.nonfinite_streak},
            "best_valid_elbo": s.best_valid_elbo,
            "valid_elbo": s.valid_elbo,
            "analytic_kl": self.analytic_kl,
            **(extra or {}),
        }

    def load_checkpoint(self, state: dict[str, Any], where: str = "checkpoint") -> None:
        try:
            self.program.load_state_dict(state["program"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.state = TrainState(
                epoch=int(state["epoch"]), step=int(state["step"]),
                nonfinite_total=int(state["nonfinite"]["total"]), nonfinite_streak=int(state["nonfinite"]["consecutive"]),
                best_valid_elbo=state.get("best_valid_elbo"), valid_elbo=state.get("valid_elbo"),
            )
            rng = state["rng"]
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise RunError(f"{where}: does not match this spec ({str(err).splitlines()[0]})") from None
        self._streak.fill_(self.state.nonfinite_streak)
        _set_rng_state(rng, self.device, replica=self.world is not None)


# ---------------------------------------------------------------- fit
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


def _prepare_run(run: RunDir, spec: Spec, resume: bool, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Check the run directory; returns the checkpoint to resume from, or None (fresh)."""
    shown = display_path(run.path)
    if run.path.exists() and not run.path.is_dir():
        raise RunError(f"{shown}: exists and is not a directory; choose another --out")
    has_checkpoint = run.checkpoint.is_file()
    if has_checkpoint and not resume:
        raise RunError(f"{shown} already holds a trained run (checkpoint.pt); pass --resume to continue it, or --out DIR for a new run")
    if has_checkpoint:
        if not run.spec.is_file():
            raise RunError(f"{shown}: has a checkpoint but no spec.yaml, cannot check that --resume uses the same spec")
        try:
            saved = yaml.safe_load(run.spec.read_text())
        except (OSError, yaml.YAMLError) as err:
            raise RunError(f"{display_path(run.spec)}: unreadable ({err.__class__.__name__})") from None
        current = yaml.safe_load(spec.resolved_yaml())
        diff = _first_difference(_without(saved, RESUME_MAY_CHANGE), _without(current, RESUME_MAY_CHANGE))
        if diff is not None:
            key = ".".join(str(p) for p in diff[0]) or "(document)"
            raise RunError(f"--resume: the spec differs from the run's {display_path(run.spec)} at {key} "
                           f"({diff[1]!r} in the run, {diff[2]!r} now); resume with the same spec and --set, or use --out DIR for a new run")
        state = run.load_checkpoint(map_location="cpu")
        if saved != current:  # only train.epochs / data.data_dir changed: the spec on disk follows
            run.spec.write_text(spec.resolved_yaml())
        return state
    if resume:
        log(f"{shown}: no checkpoint to resume, starting a new run")
    run.path.mkdir(parents=True, exist_ok=True)
    run.spec.write_text(spec.resolved_yaml())
    MetricsLog(run.metrics).clear()
    TensorBoard.clear(run.tensorboard)
    return None


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True, disable=not enabled, file=sys.stderr)


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
) -> FitResult:
    """Train the spec at ``spec_path`` (with ``--set`` style ``overrides``) into a run directory.

    ``out`` defaults to ``runs/<spec name>``.  ``progress`` (a tqdm bar per epoch)
    defaults to "stderr is a terminal and not quiet".  ``log`` receives the per-epoch
    lines (default: print, or nothing when ``quiet``).

    ``distributed=True``: this process is one of ``WORLD_SIZE`` (torchrun's
    environment, or :func:`hiervae.train.distributed.launch`); ``device`` is then the
    device type and each process uses ``cuda:LOCAL_RANK`` or the CPU.  Only rank 0
    logs and writes the run directory; every rank returns the same counters and
    validation ELBO, and ``history`` on other ranks holds only this call's epochs.
    """
    started = time.perf_counter()
    spec = load_spec(spec_path, overrides)
    graph = build_graph(spec)
    train = graph.train
    if train.seed < 0:
        raise SpecError(f"seed must be >= 0, got {train.seed}", spec.source.at(("train", "seed")))
    world: World | None = None
    if distributed:
        from hiervae.train.distributed import World

        world = World.from_env(device)
    try:
        result = _fit(spec, graph, world, started, out=out, device=device, resume=resume, data_dir=data_dir,
                      download=download, quiet=quiet, progress=progress, log=log)
        if world is not None:
            world.close(synchronize=True)  # every rank done before any tears the group down
        return result
    finally:
        if world is not None:
            world.close()


def _fit(spec: Spec, graph: ModelGraph, world: World | None, started: float, *, out, device, resume, data_dir,
         download, quiet, progress, log) -> FitResult:
    main = world is None or world.is_main
    if log is None or not main:
        log = (lambda s: None) if quiet or not main else print
    if progress is None:
        progress = not quiet and sys.stderr.isatty()
    progress = progress and main
    train = graph.train
    dev = world.device if world is not None else resolve_device(device)
    analytic_kl = select_analytic_kl(graph, spec)
    run = RunDir(out if out is not None else Path("runs") / spec.name)

    if world is not None and world.local_rank != 0:
        world.barrier()  # local rank 0 downloads (if it must) while the others wait
    splits = load_dataset(graph.data.dataset, data_dir=data_dir if data_dir is not None else graph.data.data_dir,
                          binarize=graph.data.binarize, validation=graph.data.validation, download=download,
                          dequantize=graph.data.dequantize)
    if world is not None and world.local_rank == 0:
        world.barrier()
    check_data_matches(graph, splits)
    splits = splits.place(dev)  # on the device when it fits, else pinned host memory

    pyro.set_rng_seed(train.seed)
    program = build_program(graph).to(dev)
    if world is not None:
        program = world.prepare(program)
    trainer = Trainer(program, graph, splits, device=dev, analytic_kl=analytic_kl, world=world)
    if world is None:
        resume_state = _prepare_run(run, spec, resume, log)  # touches the run directory only now
    else:  # rank 0 checks the run directory, every rank gets its verdict and checkpoint
        outcome: tuple[str, Any] = ("ok", None)
        if main:
            try:
                outcome = ("ok", _prepare_run(run, spec, resume, log))
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

    tensorboard = TensorBoard(run.tensorboard, purge_step=start + 1 if start else None) if main else None
    last_plot = -math.inf
    stopped: NonFiniteStop | None = None
    try:
        with pyro.validation_enabled(False):
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
                if s.valid_elbo is not None and math.isfinite(s.valid_elbo) and (s.best_valid_elbo is None or s.valid_elbo > s.best_valid_elbo):
                    s.best_valid_elbo = s.valid_elbo
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
                run.save_checkpoint(trainer.checkpoint({"spec_name": spec.name}))
                log(_epoch_line(record, train.epochs))
                last = epoch + 1 == train.epochs
                if last or time.monotonic() - last_plot >= PLOT_EVERY_S:
                    plots.write_plots(history, run.plots, title)
                    last_plot = time.monotonic()
    finally:
        if tensorboard is not None:
            tensorboard.close()
    if main and history and (stopped is not None or start >= train.epochs):
        plots.write_plots(history, run.plots, title)
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


def _mean(values: list[float]) -> float:
    """Mean of per-step values, exactly the value itself when they are all equal."""
    return values[0] if len(set(values)) == 1 else math.fsum(values) / len(values)


def _fmt(value: Any, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _epoch_line(r: dict[str, Any], total: int) -> str:
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
