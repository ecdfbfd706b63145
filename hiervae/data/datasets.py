"""``load_dataset``: one call from a dataset name to train/valid/test tensors.

Binarisation modes (``binarize``):

* ``"dynamic"`` (the paper's setting): ``train`` stays real-valued, the Bernoulli means;
  :class:`hiervae.data.Batches` with ``binarize=True`` samples fresh binary images
  every epoch.  ``valid`` and ``test`` are binarised ONCE with fixed seeds
  (``EVAL_SEEDS``), so every model and every run is evaluated on the same binary
  images and reported likelihoods are comparable.
* ``"static"``: every split binarised once with fixed seeds.  On real-valued MNIST this
  is *our* fixed binarisation, not the Larochelle one; use ``binarized_mnist`` for the
  standard static benchmark.
* ``"none"``: real values in [0, 1] everywhere.

Dequantisation (``dequantize``, for 8-bit images modelled by a continuous density; see
:mod:`hiervae.data.dequantize`): ``"uniform"`` keeps ``train`` as the pixel values
``k / 255`` and :class:`hiervae.data.Batches` with ``dequantize=True`` draws fresh
noise for every batch; ``valid`` and ``test`` are dequantised ONCE with the fixed seeds
``EVAL_SEEDS``.  ``"none"`` leaves the values as loaded.  Only with ``binarize: none``.

Fixed binarisation draws ``u`` from a legacy ``numpy.random.RandomState(seed)`` stream
(frozen across numpy versions), row-major, and sets a pixel to 1 iff ``u < p``.

Validation data is the last ``validation`` examples of the training set (MNIST:
the standard last 10000 of the 60000), unless the dataset has a given split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from hiervae.data.base import DATASETS, RawData
from hiervae.data.dequantize import DEQUANTIZE_MODES, dequantize_fixed
from hiervae.errors import DataError

BINARIZE_MODES = ("dynamic", "static", "none")
EVAL_SEEDS = {"train": 20_000_101, "valid": 20_000_102, "test": 20_000_103}
_ROWS_PER_CHUNK = 8192


@dataclass(frozen=True)
class DataSplits:
    """float32 ``(N, D)`` tensors of one dataset, on CPU until :meth:`to` moves them."""

    name: str
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    event_shape: tuple[int, ...]
    image_shape: tuple[int, ...]  # (H, W) grey or (C, H, W) colour
    binarize: str
    dequantize: str = "none"
    train_labels: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    extra: dict[str, dict[str, torch.Tensor]] | None = None  # split -> array name -> tensor (a file's other arrays)
    primary: str = "images"  # the name of the array held in train/valid/test
    source: dict | None = None  # where the data came from (files and their sha256), for the run directory
    pixels: bool = True  # the primary array holds pixel values (a density on them needs dequantisation)

    @property
    def array_names(self) -> list[str]:
        names = [self.primary]
        if self.train_labels is not None:
            names.append("labels")
        return names + [n for n in (self.extra or {}).get("train", {}) if n not in names]

    def array(self, split: str, name: str) -> torch.Tensor:
        """Array ``name`` of ``split``: the primary one, ``labels``, or one of a file's others."""
        if name == self.primary:
            return getattr(self, split)
        if name == "labels" and self.train_labels is not None:
            return getattr(self, f"{split}_labels")
        return self.extra[split][name]

    @property
    def noisy_arrays(self) -> frozenset[str]:
        """Arrays re-sampled in every training batch (pixels, not labels)."""
        return frozenset({self.primary}) if self.dynamic or self.dequantized else frozenset()

    @property
    def dynamic(self) -> bool:
        """True when ``train`` holds Bernoulli means to be re-sampled every epoch."""
        return self.binarize == "dynamic"

    @property
    def dequantized(self) -> bool:
        """True when ``train`` holds pixels ``k / 255`` to be dequantised afresh in every batch."""
        return self.dequantize == "uniform"

    def fixed(self, split: str) -> torch.Tensor:
        """The tensor of ``split`` as models are scored on it: ``valid`` and ``test`` as
        stored; ``train``, when it is re-sampled every batch, with the fixed noise of
        ``EVAL_SEEDS["train"]`` (binarised or dequantised once, on the CPU)."""
        x = getattr(self, split)
        if split != "train" or not (self.dynamic or self.dequantized):
            return x
        fix = binarize_fixed if self.dynamic else dequantize_fixed
        return torch.from_numpy(fix(x.cpu().numpy(), EVAL_SEEDS["train"])).to(x.device)

    _TENSORS = ("train", "valid", "test", "train_labels", "valid_labels", "test_labels")

    @property
    def nbytes(self) -> int:
        """Bytes of all the split tensors (what :meth:`place` would move to a device)."""
        return sum(t.numel() * t.element_size() for t in (getattr(self, k) for k in self._TENSORS) if t is not None)

    def to(self, device: torch.device | str) -> "DataSplits":
        """The same splits on ``device`` (e.g. the GPU, so batching never copies)."""
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, **{k: move(getattr(self, k)) for k in self._TENSORS})

    def place(self, device: torch.device | str) -> "DataSplits":
        """The splits where a run on ``device`` should keep them (:func:`resident_on`):
        all on the device when they fit, else in pinned host memory, from which each
        batch is copied with ``non_blocking=True``."""
        device = torch.device(device)
        if resident_on(self.nbytes, device):
            return self.to(device)
        return replace(self, **{k: _pinned(getattr(self, k)) for k in self._TENSORS})


DEVICE_DATA_FRACTION = 0.25  # data may take at most this share of the device's free memory


def resident_on(nbytes: int, device: torch.device | str) -> bool:
    """The rule for keeping a dataset on ``device``: always on the CPU; on a GPU when
    ``nbytes`` is at most ``DEVICE_DATA_FRACTION`` of its free memory at the time of the
    call, leaving the rest to the model, activations and the allocator.  (MNIST as
    float32 is 220 MB: resident on any GPU with 1 GB free.)"""
    device = torch.device(device)
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_DATA_FRACTION * free


def place_tensor(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """One tensor by the same rule as :meth:`DataSplits.place`."""
    device = torch.device(device)
    return t.to(device) if resident_on(t.numel() * t.element_size(), device) else _pinned(t)


def _pinned(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` on the host, page-locked when CUDA is available (so copies can be asynchronous)."""
    if t is None:
        return None
    t = t.cpu()
    return t.pin_memory() if torch.cuda.is_available() and not t.is_pinned() else t


def binarize_fixed(x: np.ndarray, seed: int) -> np.ndarray:
    """One reproducible Bernoulli sample of ``x`` (values in [0, 1]) as float32 {0, 1}."""
    rng = np.random.RandomState(seed)
    out = np.empty(x.shape, np.float32)
    for i in range(0, len(x), _ROWS_PER_CHUNK):
        block = x[i : i + _ROWS_PER_CHUNK]
        out[i : i + len(block)] = rng.random_sample(block.shape) < block
    return out


def _split(name: str, raw: RawData, validation: int | None, default: int | None):
    if raw.valid is not None:
        if validation is not None and validation != len(raw.valid):
            raise DataError(
                f"{name}: has a fixed split of {len(raw.train)}/{len(raw.valid)}/{len(raw.test)} examples; "
                f"validation must be {len(raw.valid)} or unset, not {validation}"
            )
        return raw.train, raw.valid, raw.train_labels, raw.valid_labels
    n_val = default if validation is None else validation
    if isinstance(n_val, bool) or not isinstance(n_val, int) or not 0 <= n_val < len(raw.train):
        raise DataError(f"{name}: validation must be an integer in [0, {len(raw.train) - 1}], got {validation!r}")
    cut = len(raw.train) - n_val
    labels = raw.train_labels
    return (raw.train[:cut], raw.train[cut:],
            None if labels is None else labels[:cut], None if labels is None else labels[cut:])


class DataOptionError(DataError):
    """A data option that cannot work with its dataset; ``key`` names the spec key."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def resolve_options(name: str, binarize: str | None, validation: int | None, dequantize: str = "none"):
    """``(source, binarize, validation)`` of dataset ``name``: the dataset's own defaults
    where an option is unset, every combination that cannot work refused (before any data
    is touched, so ``hiervae check`` says it too)."""
    try:
        source = DATASETS.get(name)
    except KeyError as e:
        raise DataOptionError(e.args[0], "dataset") from None
    mode = source.default_binarize if binarize is None else binarize
    if mode not in BINARIZE_MODES:
        raise DataOptionError(f"{name}: binarize must be one of {', '.join(BINARIZE_MODES)}, got {binarize!r}", "binarize")
    if source.binarize_modes is not None and mode not in source.binarize_modes:
        raise DataOptionError(f"{name}: binarize must be {' or '.join(source.binarize_modes)} for this real-valued "
                              f"dataset, got {mode!r}", "binarize")
    if source.binary and mode == "dynamic":
        raise DataOptionError(
            f"{name}: the data is already a fixed binarisation (one published sample), so it cannot be "
            f"binarised dynamically; use binarize 'static' (or 'none'), or dataset 'mnist' for dynamic binarisation",
            "binarize")
    if dequantize not in DEQUANTIZE_MODES:
        raise DataOptionError(f"{name}: dequantize must be one of {', '.join(DEQUANTIZE_MODES)}, got {dequantize!r}",
                              "dequantize")
    if dequantize != "none" and mode != "none":
        raise DataOptionError(f"{name}: dequantize {dequantize!r} adds noise to pixel values and needs binarize 'none', "
                              f"got {mode!r}", "dequantize")
    if source.default_validation is None:
        if validation is not None and source.fixed_valid is not None and validation != source.fixed_valid:
            raise DataOptionError(f"{name}: has a fixed validation split of {source.fixed_valid} examples; validation "
                                  f"must be {source.fixed_valid} or unset, not {validation}", "validation")
    else:
        validation = source.default_validation if validation is None else validation
        if source.train_pool is not None and not 0 <= validation < source.train_pool:
            raise DataOptionError(f"{name}: validation must be an integer in [0, {source.train_pool - 1}], "
                                  f"got {validation!r}", "validation")
    return source, mode, validation


def load_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    binarize: str | None = None,
    validation: int | None = None,
    download: bool = True,
    dequantize: str = "none",
) -> DataSplits:
    """Load dataset ``name`` (see ``DATASETS.names()``) as train/valid/test tensors.

    ``binarize`` and ``validation`` default to the dataset's own defaults (MNIST and
    digits: dynamic, binarized_mnist: static; MNIST validation 10000, digits 200).
    ``dequantize="uniform"`` (with ``binarize="none"``) adds uniform noise to 8-bit
    pixels, see the module docstring.  ``download=False`` forbids network access.  Every problem is a one-line DataError.
    """
    source, mode, validation = resolve_options(name, binarize, validation, dequantize)
    raw = source.load(data_dir, download)
    train, valid, train_labels, valid_labels = _split(name, raw, validation, source.default_validation)
    test = raw.test
    if not raw.binary and mode != "none":
        if mode == "static":
            train = binarize_fixed(train, EVAL_SEEDS["train"])
        valid = binarize_fixed(valid, EVAL_SEEDS["valid"])
        test = binarize_fixed(test, EVAL_SEEDS["test"])
    if dequantize == "uniform":
        valid = dequantize_fixed(valid, EVAL_SEEDS["valid"])
        test = dequantize_fixed(test, EVAL_SEEDS["test"])
    tensor = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return DataSplits(
        name=name,
        train=tensor(train), valid=tensor(valid), test=tensor(test),
        event_shape=(train.shape[1],), image_shape=raw.image_shape, binarize=mode,
        dequantize=dequantize,
        train_labels=tensor(train_labels), valid_labels=tensor(valid_labels), test_labels=tensor(raw.test_labels),
    )
