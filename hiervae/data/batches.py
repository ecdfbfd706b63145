"""Minibatches of one in-memory tensor, reproducible from (seed, epoch) alone.

MNIST fits in memory (and on any GPU), so a DataLoader's workers, collation and
host-to-device copies are pure overhead: a batch is one ``index_select`` on the tensor
wherever it lives.

Reproducibility: the order of epoch ``e`` comes from a CPU generator seeded from
``(seed, e)``, so it is the same on every device and every rank.  Nothing depends on
what was iterated before, so a run resumed at epoch ``e`` (even mid-epoch, via
``start_batch``) sees exactly the batches the original run saw.

Sharding for data parallelism (``rank``, ``world_size``; ``batch_size`` is the batch
*per rank*): the *global* batch ``k`` is entries ``[k*B, (k+1)*B)`` of the epoch's
permutation, ``B = batch_size * world_size``, exactly the batch ``k`` of a single
process with batch size ``B``, and rank ``r`` takes its contiguous block of
``batch_size`` of them.  A short last global batch of ``m`` examples is dealt out in
blocks of ``m // world_size``.  Shards are disjoint, of equal size and every rank runs
the same number of steps; ``n % world_size`` examples are left out per epoch, as with
``DistributedSampler(drop_last=True)``, and they differ from epoch to epoch.

Dynamic binarisation does not depend on the rank: the uniform noise of global batch
``k`` is drawn whole (``m x D``, ``m`` its global size) from a generator on the data's
device seeded from ``(seed, e, k)``, every rank thresholds its own rows of it, and a
single process uses all of them.  So an example is binarised the same way in epoch
``e`` by whichever rank processes it, or by one process with the same global batch
size.  (CPU and CUDA generators differ, so binarised values match only on the same
device type.)  Dequantisation (``dequantize=True``: pixels ``k / 255`` become
``(k + u) / 256``, :func:`hiervae.data.dequantize.dequantize`) draws its uniform
noise ``u`` the same way, from its own stream of seeds.

Where the data lives (``device``): batches are delivered on ``device`` (default: the
data's).  Data resident there (MNIST on a GPU, see :meth:`hiervae.data.DataSplits.place`)
is batched with one ``index_select`` on the device.  Data left on the host (too big for
the device) is gathered on the host, page-locked, and copied with ``non_blocking=True``,
so the copy overlaps the previous step's kernels.  Either way the uniform noise of the
binarisation is drawn on ``device`` and the batch order comes from the CPU generator,
so batches are identical whether or not the data is resident.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from hiervae.data.dequantize import dequantize as dequantize_pixels
from hiervae.data.observations import Observations

_ORDER, _BERNOULLI, _UNIFORM = 0, 1, 2


def _seed(*words: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _full_device(device: torch.device) -> torch.device:
    """``cuda`` -> ``cuda:<current>``, so it compares equal to the device of a tensor there."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class Batches:
    """Iterate over ``data`` (an ``(N, D)`` tensor, or :class:`Observations`: one tensor per
    observed node, the same rows of each) in minibatches of ``batch_size``.

    ``binarize=True`` makes every batch a fresh Bernoulli sample of its rows (dynamic
    binarisation; the data must then hold probabilities in [0, 1]).  ``dequantize=True``
    makes every batch a fresh uniform dequantisation of its rows (the data must hold
    8-bit pixel values ``k / 255``).  With observations, only the tensors named in
    ``noisy`` get the noise (an image is binarised, its label is not); the first of them
    draws exactly the noise a single tensor would.  Use ``for x in batches.epoch(e)``, or
    ``set_epoch(e)`` then ``for x in batches``.
    """

    def __init__(
        self,
        data: "torch.Tensor | Observations",
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        binarize: bool = False,
        dequantize: bool = False,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
        noisy: "Sequence[str] | None" = None,
    ):
        self.observations = isinstance(data, dict)
        if self.observations:
            self.tensors = Observations(data)
            self.noisy = list(noisy if noisy is not None else self.tensors)
            data = self.tensors.first
        else:
            self.tensors, self.noisy = Observations({"": data}), [""]
        if data.dim() < 1 or len(data) == 0:
            raise ValueError(f"Batches needs a non-empty tensor, got shape {tuple(data.shape)}")
        if batch_size < 1 or seed < 0:
            raise ValueError(f"batch_size must be >= 1 and seed >= 0, got {batch_size} and {seed}")
        if binarize and dequantize:
            raise ValueError("Batches: binarize and dequantize exclude each other")
        if not 0 <= rank < world_size or world_size > len(data):
            raise ValueError(f"need 0 <= rank < world_size <= {len(data)}, got rank {rank}, world_size {world_size}")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.shuffle, self.drop_last, self.binarize, self.dequantize = shuffle, drop_last, binarize, dequantize
        self.rank, self.world_size = rank, world_size
        self.device = data.device if device is None else _full_device(torch.device(device))
        self.num_examples = len(data) // world_size  # per rank
        self._epoch = 0

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that ``iter(self)`` yields, as with DistributedSampler."""
        self._epoch = epoch

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.epoch(self._epoch)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's example indices for ``epoch``, in batch order (CPU int64)."""
        n, w = len(self.data), self.world_size
        if self.shuffle:
            gen = torch.Generator().manual_seed(_seed(self.seed, epoch, _ORDER))
            order = torch.randperm(n, generator=gen)
        else:
            order = torch.arange(n)
        if w == 1:
            return order
        full = n // (self.batch_size * w) * self.batch_size * w  # examples in full global batches
        tail = (n - full) // w  # this rank's share of the short last global batch
        blocks = order[:full].view(-1, w, self.batch_size)[:, self.rank].reshape(-1)
        return torch.cat([blocks, order[full + self.rank * tail : full + (self.rank + 1) * tail]])

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[torch.Tensor]:
        """The batches of ``epoch``, skipping the first ``start_batch`` (for resuming)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        idx = self.indices(epoch).to(self.data.device)
        n, b, w = len(self.data), self.batch_size, self.world_size
        device = self.device
        for k in range(start_batch, len(self)):
            rows = idx[k * b : (k + 1) * b]
            out = Observations()
            for name, tensor in self.tensors.items():
                batch = tensor.index_select(0, rows)
                if batch.device != device:  # host-resident data: page-locked, asynchronous copy
                    if batch.device.type == "cpu" and device.type == "cuda" and not batch.is_pinned():
                        batch = batch.pin_memory()
                    batch = batch.to(device, non_blocking=True)
                if (self.binarize or self.dequantize) and name in self.noisy:
                    size = min(b * w, n - k * b * w)  # the global batch, drawn whole on every rank
                    gen = torch.Generator(device=device)
                    stream = _BERNOULLI if self.binarize else _UNIFORM
                    j = self.noisy.index(name)  # the first noisy tensor draws what a single tensor would
                    gen.manual_seed(_seed(self.seed, epoch, stream, k) if j == 0 else _seed(self.seed, epoch, stream, k, j))
                    noise = torch.rand((size, *batch.shape[1:]), generator=gen, dtype=batch.dtype, device=batch.device)
                    start = self.rank * len(batch)
                    noise = noise[start : start + len(batch)]
                    batch = (noise < batch).to(batch.dtype) if self.binarize else dequantize_pixels(batch, noise)
                out[name] = batch
            yield out if self.observations else out[""]
