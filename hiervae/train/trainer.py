"""The training loop of one program on one device: :class:`Trainer`.

One step is ``terms = elbo_terms(program, x, analytic_kl)``, then
``loss(terms, beta, free_bits) / batch`` backward and one fused Adam step over
``program.parameters()``; beta is a 0-d tensor on the device.  With ``train.compile:
true`` that loss is compiled with ``torch.compile`` (:func:`hiervae.program.compile_loss`:
one graph, compiled on the first step, whose time is kept; annealing never recompiles;
validation stays eager).  Nothing in the step loop waits for the device: metrics
accumulate as tensors (one sync per epoch, plus the progress bar's refreshes), a step
with a non-finite loss or gradient is skipped on the device (fused Adam's ``found_inf``),
and the run of consecutive skipped steps is checked every ``train.max_nonfinite_steps``
steps.

``train.precision: bf16`` runs the networks' matmuls under bf16 autocast with the
objective in float32 (:mod:`hiervae.nn.precision`); validation stays fp32.  The step has
no host syncs (a test makes every sync raise).

Validation runs on a forked RNG with a fixed seed: the same noise every epoch, and no
effect on training.  With ``world`` (a :class:`hiervae.train.collectives.World` of several
processes) the trainer is one replica: it trains on its shard of each global batch and
averages gradients with the other ranks every step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hiervae.data import Batches, DataSplits
from hiervae.data.binding import BoundData, bind
from hiervae.data.observations import Observations
from hiervae.data.dequantize import bits_per_dim
from hiervae.errors import RunError
from hiervae.graph import ModelGraph
from hiervae.nn.precision import network_precision
from hiervae.policy import Objective, select_objective
from hiervae.program import Program, compile_loss, elbo_terms, loss
from hiervae.program.iwae import dreg_surrogate, guide_parameters, iw_terms
from hiervae.train.checkpoint import CHECKPOINT_VERSION, forked_rng, rng_state, set_rng_state
from hiervae.train.metrics import EpochStats
from hiervae.train.optim import clip_each, grads_finite, make_optimizer, set_lr, step_unless
from hiervae.train.pyro_engine import PyroEngine
from hiervae.train.schedules import BetaPlan, LRSchedule, beta_schedule, lr_schedule

if TYPE_CHECKING:
    from hiervae.train.collectives import World

RUNNING_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
VALID_SEED_OFFSET = 1_000_003  # validation noise: torch.manual_seed(train.seed + this)
VALID_BATCH = 1000
BAR_REFRESH_S = 0.5


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
    best_epoch: int = 0  # the epoch of best_valid_elbo (early stopping counts from it)


class Trainer:
    """The training loop of one program on one device (the spec's ``train:`` section)."""

    def __init__(self, program: Program, graph: ModelGraph, data: BoundData | DataSplits, *, device: torch.device,
                 analytic_kl: bool, optimizer: torch.optim.Optimizer | None = None, world: World | None = None,
                 objective: Objective | None = None):
        if isinstance(data, DataSplits):  # a dataset's splits: bound to the one observed node
            data = bind(data, graph)
        self.program, self.graph, self.data, self.device = program, graph, data, device
        self.world = world
        self.train_spec = graph.train
        self.analytic_kl = analytic_kl
        self.plan = dataclasses.replace(objective or select_objective(graph), analytic_kl=analytic_kl)
        self.engine = PyroEngine(program, self.plan, self.train_spec.optimizer) if self.plan.engine == "pyro" else None
        self._lr: float | None = None
        self.free_bits = float(self.train_spec.free_bits)
        self.pixel_dims = graph.pixel_dims  # D: ELBOs are also reported in bits/dim
        self.params = [p for p in program.parameters() if p.requires_grad]
        guide_ids = {id(p) for p in guide_parameters(program)} if self.plan.dreg else set()
        self.dreg_split = ([p for p in self.params if id(p) not in guide_ids], [p for p in self.params if id(p) in guide_ids])
        # running statistics a forward pass updates: restored after a skipped (non-finite) step
        self.statistics = [b for name, b in program.named_buffers() if name.rsplit(".", 1)[-1] in RUNNING_STATISTICS]
        self.optimizer = None if self.engine is not None else optimizer or make_optimizer(self.params, self.train_spec.optimizer)
        self.betas: BetaPlan = beta_schedule(self.train_spec)
        self.lrs: LRSchedule = lr_schedule(self.train_spec)
        bs = self.train_spec.batch_size
        n = data.train.size
        w = world.size if world is not None else 1
        if bs % w:
            raise RunError(f"train.batch_size {bs} is the global batch and must be divisible by the {w} processes")
        self.batches = Batches(data.train, bs // w, seed=self.train_spec.seed, binarize=data.dynamic,
                               dequantize=data.dequantized, noisy=data.noisy,
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
    def _objective(self, x: Observations, beta: torch.Tensor):
        """(loss per example, sum of log-likelihoods, per-latent sums of KL, DReG surrogate or None)."""
        if self.plan.elbo == "iwae":
            return self._iw_objective(x, beta)
        if self.world is None:
            terms = elbo_terms(self.program, x, self.analytic_kl)
            value = loss(terms, beta, self.free_bits) / x.size
        else:
            with self.world.sharded_noise():
                terms = elbo_terms(self.program, x, self.analytic_kl)
            value = self.world.loss(terms, beta, self.free_bits) / x.size
        kl = torch.stack([k.detach().sum() for k in terms.kl.values()]) if terms.kl else terms.log_likelihood.new_zeros(0)
        return value, terms.log_likelihood.detach().sum(), kl, None

    def _iw_objective(self, x: Observations, beta: torch.Tensor):
        """The importance-weighted bound with K = train.num_particles; the logged ELBO is
        the bound at beta = 1 and the KL per latent the particles' mean of log q - log p."""
        terms = iw_terms(self.program, x, self.plan.particles)
        value = -terms.bound(beta).sum() / x.size
        with torch.no_grad():
            kl = torch.stack([r.mean(0).sum() for r in terms.log_ratio.values()]) if terms.log_ratio \
                else value.new_zeros(0)
            ll = terms.bound(1.0).sum() + kl.sum()
        surrogate = dreg_surrogate(self.program, x, terms, beta) / x.size if self.plan.dreg else None
        return value, ll, kl, surrogate

    def _backward(self, value: torch.Tensor, surrogate: torch.Tensor | None) -> None:
        if surrogate is None:
            value.backward()
            return
        others, guide = self.dreg_split  # model parameters: the IWAE gradient; the guide's: DReG
        for params, target, retain in ((others, value, True), (guide, surrogate, False)):
            grads = torch.autograd.grad(target, params, retain_graph=retain, allow_unused=True)
            for p, g in zip(params, grads):
                p.grad = g

    def _pyro_step(self, x: Observations, stats: EpochStats) -> None:
        with network_precision(self.program, self.train_spec.precision, self.device.type):
            loss_sum = self.engine.step(x, self.beta)
        value = torch.tensor(loss_sum, dtype=torch.float64, device=self.device)
        ok = torch.isfinite(value)
        # SVI returns its loss only: the epoch's train_elbo is minus that (annealed) loss, KL comes from validation
        stats.add(value, -value, torch.zeros(len(self.program.latents), device=self.device), x.size, ok)
        self._count_step(ok)

    def _count_step(self, ok: torch.Tensor) -> None:
        """One more step, and the run of consecutive non-finite ones (on the device, no sync)."""
        self._streak = torch.where(ok, torch.zeros_like(self._streak), self._streak + 1)
        self._worst = torch.maximum(self._worst, self._streak)
        self.state.step += 1

    def train_step(self, x: Observations, stats: EpochStats) -> None:
        if self.engine is not None:
            return self._pyro_step(x, stats)
        first_compiled = self.train_spec.compile and self.compile_seconds is None
        started = time.perf_counter() if first_compiled else 0.0
        saved = [b.clone() for b in self.statistics]
        with network_precision(self.program, self.train_spec.precision, self.device.type):
            value, ll, kl, surrogate = self.objective(x, self.beta)
        self.optimizer.zero_grad(set_to_none=True)
        self._backward(value, surrogate)
        checked = value if self.world is None else self.world.average_gradients(self.params, value)
        if self.train_spec.optimizer.clip_norm:
            clip_each(self.params, self.train_spec.optimizer.clip_norm)
        ok = grads_finite(self.params, checked)
        step_unless(self.optimizer, ok)
        for buffer, before in zip(self.statistics, saved):  # a skipped step leaves them as they were (no sync)
            buffer.copy_(torch.where(ok, buffer, before))
        stats.add(value.detach() * x.size, ll, kl, x.size, ok)
        self._count_step(ok)
        if first_compiled:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.compile_seconds = time.perf_counter() - started

    def _check_nonfinite(self, epoch: int) -> None:
        if int(self._worst) >= self.train_spec.max_nonfinite_steps:
            raise NonFiniteStop(epoch, self.state.step)

    # ------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int, bar=None) -> dict[str, Any]:
        """Train epoch ``epoch`` (0-based); returns the epoch's training summary.

        ``beta`` of the summary is the mean of the betas its steps used."""
        betas = self.betas.epoch_betas(epoch, max(len(self.batches), 1))
        beta, lr = _mean(betas), self.lrs(epoch)
        if self.engine is None:
            set_lr(self.optimizer, lr)
        elif lr != self._lr:  # a pyro optimiser's own per-step decay (clipped_adam's lrd) is left alone
            self.engine.set_lr(lr)
        self._lr = lr
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
    def validate(self, data: "Observations | torch.Tensor | None" = None, batch_size: int = VALID_BATCH) -> dict[str, Any]:
        """ELBO and per-latent KL on the fixed validation split, eval mode, fixed noise."""
        data = self.program.observations(self.data.valid if data is None else data)
        n = data.size
        if n == 0:
            return {}
        was_training = self.program.training
        self.program.eval()
        ll_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        kl_sum = torch.zeros(len(self.program.latents), dtype=torch.float64, device=self.device)
        try:
            with forked_rng(self.device, self.train_spec.seed + VALID_SEED_OFFSET):
                for chunk in data.chunks(batch_size):
                    chunk = chunk.to(self.device, non_blocking=True)  # host-resident data (DataSplits.place)
                    terms = elbo_terms(self.program, chunk, self.analytic_kl)
                    ll_sum += terms.log_likelihood.double().sum()
                    if terms.kl:
                        kl_sum += torch.stack([k.double().sum() for k in terms.kl.values()])
        finally:
            self.program.train(was_training)
        values = torch.cat([ll_sum[None], kl_sum]).div(n).tolist()
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
            "optimizer": self.optimizer.state_dict() if self.engine is None else self.engine.state_dict(),
            "engine": self.plan.engine,
            "best_epoch": s.best_epoch,
            "epoch": s.epoch,
            "step": s.step,
            "rng": rng_state(self.device),
            "nonfinite": {"total": s.nonfinite_total, "consecutive": s.nonfinite_streak},
            "best_valid_elbo": s.best_valid_elbo,
            "valid_elbo": s.valid_elbo,
            "analytic_kl": self.analytic_kl,
            **(extra or {}),
        }

    def load_checkpoint(self, state: dict[str, Any], where: str = "checkpoint") -> None:
        try:
            self.program.load_state_dict(state["program"])
            if state.get("engine", "direct") != self.plan.engine:
                raise ValueError(f"trained with the {state.get('engine', 'direct')} engine, now {self.plan.engine}")
            if self.engine is None:
                self.optimizer.load_state_dict(state["optimizer"])
            else:
                self.engine.load_state_dict(state["optimizer"])
            self.state = TrainState(
                epoch=int(state["epoch"]), step=int(state["step"]),
                nonfinite_total=int(state["nonfinite"]["total"]), nonfinite_streak=int(state["nonfinite"]["consecutive"]),
                best_valid_elbo=state.get("best_valid_elbo"), valid_elbo=state.get("valid_elbo"),
                best_epoch=int(state.get("best_epoch") or 0),
            )
            self._lr = None
            rng = state["rng"]
            self._streak.fill_(self.state.nonfinite_streak)
            set_rng_state(rng, self.device, replica=self.world is not None)
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError, IndexError) as err:
            first = (str(err).splitlines() or [""])[0][:200]
            raise RunError(f"{where}: does not match this spec, or is not a hiervae checkpoint "
                           f"({err.__class__.__name__}: {first})") from None


def _mean(values: list[float]) -> float:
    """Mean of per-step values, exactly the value itself when they are all equal."""
    return values[0] if len(set(values)) == 1 else math.fsum(values) / len(values)
