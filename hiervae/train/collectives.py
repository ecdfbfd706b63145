"""Data-parallel training with ``torch.distributed``: the process group and the collectives
one model replica per process needs.

Two ways in, one code path (:func:`hiervae.train.fit` with ``distributed=True``):

* ``hiervae fit SPEC --nproc N`` -- :func:`hiervae.train.launch.launch` spawns N local
  processes (gloo on CPU, nccl on CUDA with one GPU per process) that meet through a
  rendezvous file (``file://``);
* ``torchrun ... -m hiervae fit SPEC`` -- every process finds ``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK`` (and ``MASTER_ADDR`` / ``MASTER_PORT``) in its environment and
  :meth:`World.from_env` initialises the process group from it (``env://``).

The contract is that N processes train *the same model as one process* with the same
global batch (``train.batch_size``) and seed, up to floating-point summation order
(tested on CPU/gloo).  What that takes:

* **Data.**  Rank ``r`` gets the ``r``-th block of ``batch_size / N`` examples of each
  global batch of :class:`hiervae.data.Batches`, and dynamic binarisation is drawn per
  global batch, so it does not depend on the rank (see that module).
* **Gradients: an explicit all-reduce, not ``DistributedDataParallel``.**  DDP hooks
  the wrapped module's ``forward``; a :class:`~hiervae.program.Program` is never called
  through ``forward`` (Pyro runs ``program.model`` / ``program.guide`` under effect
  handlers), so DDP would need a wrapper module and would then also broadcast buffers
  every step and bucket gradients in an order of its choosing.  Instead, after
  ``backward`` every rank flattens its gradients (plus its loss) into one buffer, one
  ``all_reduce(SUM)`` adds them up, and the gradients are divided by N: each rank's
  loss is its shard's sum divided by its shard's size, so the average is the global
  batch mean.  Every rank then holds bitwise the same gradients, so the same Adam
  step keeps the replicas bitwise identical, and the NaN/inf guard (which reads the
  reduced loss and gradients) skips the same steps everywhere.  The price is no
  overlap of communication with the backward pass, negligible for these MLPs.
* **Noise.**  All ranks start from the same seed, so the torch (and CUDA) generator
  stays in step on every rank.  Each latent of the data plate is drawn at the global
  batch's size, ``N x`` the rank's shard (:class:`ShardedNoise`), and the rank keeps
  its own rows: the reparameterisation noise of an example is the noise one process
  would have drawn for it.  Dropout masks likewise (:class:`ShardedDropout`).
* **Free bits** clamp a latent's *batch-mean* KL: the mean over the global batch comes
  from one small all-reduce of the per-latent KL sums (:meth:`World.loss`), so the
  objective is the single-process one, not a per-shard approximation.
* **Batch norm.**  On CUDA, ``nn.BatchNorm*`` layers become ``nn.SyncBatchNorm``
  (statistics over the global batch, as one process).  torch's SyncBatchNorm needs a
  GPU, so on CPU/gloo each rank normalises with its shard's statistics (training is
  then *not* equal to one process), and the running statistics are averaged across
  ranks at the end of every epoch so that all replicas (and the checkpoint) agree.
  The flows' own ``BatchNormStep`` is per-rank on every backend (its running averages
  are averaged the same way).

Rank 0 alone validates (on the whole validation split, exactly as one process: same
fixed noise) and broadcasts the result, prints, and writes the run directory
(metrics, TensorBoard, plots, the atomic checkpoint).  ``--resume``: rank 0 checks
the run directory and broadcasts the checkpoint, and every rank loads it.  What is
restored: weights, Adam state, counters and rank 0's RNG states -- the CPU torch
generator (the same on every rank by construction), the CUDA generator of rank 0's
device (loaded into each rank's own device, again the same stream everywhere),
numpy and Python (unused by training).  Batch order and binarisation are pure
functions of (seed, epoch, batch).  So a resumed N-process run continues exactly as
the uninterrupted one would, and may even be resumed with another N.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from hiervae.errors import RunError
from hiervae.policy import resolve_device
from hiervae.program.objective import ElboTerms
from hiervae.program.objective import loss as single_loss
from hiervae.program.sites import noise_source

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


INIT_FILE_ENV = "HIERVAE_INIT_FILE"
"""Environment variable naming a fresh file for the process group's rendezvous (``file://``).

``--nproc`` on one machine uses it instead of ``MASTER_PORT``: a port found free by one
process can be taken by another before the group binds it (seen with parallel test
runs); a file in the launcher's private temporary directory cannot.  torchrun's
``env://`` rendezvous is used when it is not set."""


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` (or another env:// launcher)."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE"))


# ---------------------------------------------------------------- the process group
@dataclass
class World:
    """This process's place in the group, and the collectives the trainer needs."""

    rank: int
    size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # we initialised the process group, so we destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | torch.device = "cpu") -> "World | None":
        """Join the process group described by ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``.

        ``None`` for a world of one (plain single-process training).  ``device`` is the
        device *type*: with ``cuda`` this process trains on ``cuda:LOCAL_RANK`` with
        nccl; with ``cpu`` on the CPU with gloo.
        """
        try:
            rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            local_rank = int(os.environ.get("LOCAL_RANK", rank))
        except (KeyError, ValueError) as err:
            raise RunError(f"distributed training needs the environment variables {', '.join(_ENV)} "
                           f"(set by torchrun), {err.__class__.__name__}: {err}") from None
        if not 0 <= rank < size:
            raise RunError(f"RANK={rank} is not in [0, WORLD_SIZE={size})")
        if size == 1:
            return None
        dev = resolve_device(device)
        if dev.type == "cuda":
            if dev.index is not None:
                raise RunError(f"--device {device}: with several processes each one uses cuda:LOCAL_RANK; pass --device cuda")
            if local_rank >= torch.cuda.device_count():
                raise RunError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible")
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
            backend = "nccl"
        else:
            backend = "gloo"
        owns = not dist.is_initialized()
        if owns:
            kwargs = {"device_id": dev} if dev.type == "cuda" else {}
            init = os.environ.get(INIT_FILE_ENV)  # set by `launch`: a file rendezvous, no port to race for
            init_method = f"file://{init}" if init else "env://"
            dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=size, **kwargs)
        elif dist.get_world_size() != size or dist.get_rank() != rank:
            raise RunError("a process group is already initialised with another rank or size")
        return cls(rank, size, local_rank, dev, owns)

    def close(self, synchronize: bool = False) -> None:
        """Leave the process group (if this process created it).

        ``synchronize`` (the success path): wait at a barrier first, so that no rank tears
        gloo down while a peer is still finishing its last collective; a rank that exits
        under a peer's feet makes that peer abort ("terminate called without an active
        exception", seen intermittently in parallel test runs).  Not on the error path,
        where the peers may never arrive."""
        if self.owns_group and dist.is_initialized():
            if synchronize:
                dist.barrier()
            dist.destroy_process_group()

    # ------------------------------------------------------------ set-up
    def prepare(self, program: nn.Module) -> nn.Module:
        """Make ``program`` a replica: SyncBatchNorm on CUDA, sharded dropout masks,
        rank 0's parameters and buffers everywhere (they already agree when every rank
        seeded the same, this makes it so regardless)."""
        if self.device.type == "cuda":
            program = nn.SyncBatchNorm.convert_sync_batchnorm(program)
        _shard_dropout(program, self.rank, self.size)
        with torch.no_grad():
            for t in list(program.parameters()) + list(program.buffers()):
                dist.broadcast(t.data, 0)
        return program

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def barrier(self) -> None:
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    # ------------------------------------------------------------ every step
    def sharded_noise(self) -> "ShardedNoise":
        return ShardedNoise(self.rank, self.size)

    def loss(self, terms: ElboTerms, beta: float | torch.Tensor, free_bits: float) -> torch.Tensor:
        """This rank's share of the single-process loss (summed over its shard).

        Without free bits that is the local loss.  With free bits, latent ``k`` is
        charged ``max(mean_k, free_bits)`` per example, ``mean_k`` its KL averaged over
        the *global* batch: the rank charges its own KL sum where ``mean_k >=
        free_bits`` and ``free_bits`` per example elsewhere; summed over ranks that is
        the single-process value, and the gradient is the same as ``clamp``'s.
        """
        if free_bits <= 0 or not terms.kl:
            return single_loss(terms, beta, 0.0)
        n = terms.log_likelihood.shape[0]
        sums = torch.stack([k.detach().sum() for k in terms.kl.values()] + [terms.log_likelihood.new_tensor(float(n))])
        dist.all_reduce(sums)
        means = sums[:-1] / sums[-1]
        kl = sum(torch.where(m >= free_bits, k.sum(), k.new_tensor(free_bits * n)) for m, k in zip(means, terms.kl.values()))
        # a NaN/inf KL anywhere must still make the loss non-finite (as clamp would), so
        # that every rank skips the step
        return -(terms.log_likelihood.sum() - beta * kl) + 0.0 * sums.sum()

    def average_gradients(self, params: Sequence[nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
        """Replace every gradient by its mean over the ranks (one all-reduce); returns
        the ranks' summed ``loss``, finite only if every rank's loss was."""
        grads = [p.grad for p in params if p.grad is not None]
        flat = _flatten_dense_tensors(grads + [loss.detach().reshape(1).to(grads[0].dtype if grads else loss.dtype)])
        dist.all_reduce(flat)
        total = flat[-1]
        flat = flat[:-1].div_(self.size)
        for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(reduced)
        return total

    # ------------------------------------------------------------ every epoch
    def sum_stats(self, stats) -> None:
        """Make an :class:`~hiervae.train.metrics.EpochStats` hold the sums over all
        ranks (its step and non-finite counts are already the same everywhere)."""
        packed = torch.cat([torch.stack([stats.examples, stats.loss, stats.log_likelihood]), stats.kl])
        dist.all_reduce(packed)
        stats.examples, stats.loss, stats.log_likelihood = packed[0], packed[1], packed[2]
        stats.kl = packed[3:]

    def average_buffers(self, module: nn.Module) -> None:
        """Average the per-rank batch-norm running statistics over the ranks.

        With per-rank batch norm (every ``nn.BatchNorm*`` on CPU, the flows'
        ``BatchNormStep`` everywhere) the replicas' running averages drift apart;
        after this they agree again, so rank 0's checkpoint is every rank's state and
        a resumed run continues exactly.  ``SyncBatchNorm`` statistics are already
        global and the same everywhere, so they are left alone.
        """
        buffers = [b for m in module.modules() if not isinstance(m, nn.SyncBatchNorm)
                   for name, b in m.named_buffers(recurse=False)
                   if name in ("running_mean", "running_var") and b.is_floating_point()]
        if not buffers:
            return
        flat = _flatten_dense_tensors([b.data for b in buffers])
        dist.all_reduce(flat)
        flat.div_(self.size)
        for b, reduced in zip(buffers, _unflatten_dense_tensors(flat, buffers)):
            b.data.copy_(reduced)


# ---------------------------------------------------------------- noise
def _draw(fn, rank: int, world: int) -> torch.Tensor:
    """Rows ``rank`` of a draw of ``fn`` expanded to ``(world, *fn.batch_shape)``.

    One generator call of the global size, so the noise equals what one process draws
    for the whole batch (same count, same order).  Through ``Independent`` and
    ``TransformedDistribution`` only the base is expanded; the transforms then run
    on this rank's rows, as their own ``rsample`` would (keeping their caches, which
    the guide's ``log_prob`` of its own sample relies on).
    """
    if isinstance(fn, torch.distributions.Independent):
        return _draw(fn.base_dist, rank, world)
    if isinstance(fn, torch.distributions.TransformedDistribution):
        with torch.set_grad_enabled(torch.is_grad_enabled() and fn.has_rsample):
            x = _draw(fn.base_dist, rank, world)
            for t in fn.transforms:
                x = t(x)
        return x
    sample = (lambda d: d.rsample()) if fn.has_rsample else (lambda d: d.sample())
    try:
        big = fn.expand(torch.Size([world]) + fn.batch_shape)
    except NotImplementedError:  # no expand: draw `world` times, keep ours (in step, not bitwise)
        return [sample(fn) for _ in range(world)][rank]
    return sample(big)[rank]


class ShardedNoise:
    """Inside this block, the direct evaluation's latents draw for the global batch and keep
    this rank's rows (:func:`hiervae.program.sites.noise_source`).  Rank ``r``'s rows are
    ``r*b .. (r+1)*b - 1`` of the global batch, the block :class:`hiervae.data.Batches`
    gives it."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world
        self._direct = noise_source(self.draw)

    def __enter__(self) -> "ShardedNoise":
        self._direct.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._direct.__exit__(*exc)

    def draw(self, fn) -> torch.Tensor:
        return _draw(fn, self.rank, self.world)


class ShardedDropout(nn.Module):
    """``nn.Dropout`` whose mask is rank ``r``'s rows of the global batch's mask.

    Without it every rank (sharing one generator state) would drop the *same*
    units for its rows.  The mask is one ``bernoulli_`` over ``(world, *x.shape)``;
    on CPU that equals ``nn.Dropout`` over the global batch, on CUDA (whose
    ``nn.Dropout`` is a fused kernel with its own RNG use) it is merely independent
    across ranks.
    """

    def __init__(self, p: float, rank: int, world: int):
        super().__init__()
        self.p, self.rank, self.world = p, rank, world

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((self.world, *x.shape), dtype=x.dtype, device=x.device).bernoulli_(keep)[self.rank]
        return x * mask.div_(keep) if keep > 0 else x * 0

    def extra_repr(self) -> str:
        return f"p={self.p}, rank={self.rank}, world={self.world}"


def _shard_dropout(module: nn.Module, rank: int, world: int) -> None:
    for name, child in list(module.named_children()):
        if type(child) is nn.Dropout:
            setattr(module, name, ShardedDropout(child.p, rank, world))
        else:
            _shard_dropout(child, rank, world)
