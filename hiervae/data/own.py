"""A user's own data: named arrays in ``.npz``, ``.npy`` or ``.pt`` files.

    data: {dataset: measurements.npz, arrays: {x: x, y: y}, test: 1000, validation: 1000}
    data: {dataset: files, files: {train: train.npz, valid: valid.npz, test: test.npz}}

* one file (``dataset: PATH``): every array has the same first size, the number of
  examples; the last ``test`` of them (default: a tenth) are the test split, and
  ``validation`` more (default: a tenth of the rest) are carved from the end of the rest;
* one file per split (``dataset: files``, ``files: {train, test[, valid]}``): splits as given
  (without ``valid``, validation is carved from the train file).

A ``.npz`` holds arrays by name; an ``.npy`` one array, named ``x``; a ``.pt`` a tensor
(``x``) or a dict of tensors, read with ``weights_only=True`` (loading one never runs code).
Arrays are per-example values of any shape (flattened for the model); integer arrays can
be the labels of a ``categorical`` node.  Paths are relative to the spec's directory.

:func:`describe` reads only what the file headers say (names, shapes, dtypes), so
``hiervae check`` can compare the observed nodes with the arrays before anything is loaded.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiervae.data.datasets import DataSplits
from hiervae.data.files import sha256_of
from hiervae.errors import DataError

SUFFIXES = (".npz", ".npy", ".pt")
FILES = "files"


def is_own(dataset: str | None) -> bool:
    """Whether ``dataset`` names a user's files rather than a registered dataset."""
    return dataset is not None and (dataset == FILES or dataset.endswith(SUFFIXES))


def resolve(path: str, base: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base is None else (base / p)


@dataclass(frozen=True)
class ArrayInfo:
    shape: tuple[int, ...]  # per example
    examples: int
    integer: bool


def _npz_headers(path: Path) -> dict[str, ArrayInfo]:
    out = {}
    with zipfile.ZipFile(path) as z:
        for member in z.namelist():
            if not member.endswith(".npy"):
                continue
            with z.open(member) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:  # a newer header: read the array itself
                    a = np.lib.format.read_array(z.open(member), allow_pickle=False)
                    shape, dtype = a.shape, a.dtype
            out[member[:-4]] = _info(shape, dtype, path, member[:-4])
    return out


def _info(shape, dtype, path: Path, name: str) -> ArrayInfo:
    if len(shape) < 1:
        raise DataError(f"{path}: array {name!r} is a scalar; arrays hold one row per example")
    if np.dtype(dtype).kind not in "biuf":
        raise DataError(f"{path}: array {name!r} has dtype {np.dtype(dtype)}; numbers only")
    return ArrayInfo(tuple(int(s) for s in shape[1:]), int(shape[0]), np.dtype(dtype).kind in "biu")


def describe(path: Path) -> dict[str, ArrayInfo]:
    """Array name -> per-example shape, number of examples and whether it holds integers."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix == ".npz":
            return _npz_headers(path)
        if path.suffix == ".npy":
            a = np.load(path, mmap_mode="r", allow_pickle=False)
            return {"x": _info(a.shape, a.dtype, path, "x")}
        return {k: _info(tuple(v.shape), v.numpy().dtype, path, k) for k, v in _read_pt(path).items()}
    except DataError:
        raise
    except Exception as err:  # a file that is not what its name says
        raise DataError(f"{path}: unreadable as {path.suffix} ({err.__class__.__name__}: "
                        f"{(str(err).splitlines() or [''])[0][:120]})") from None


def _read_pt(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, torch.Tensor):
        return {"x": obj}
    if isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return obj
    raise DataError(f"{path}: a .pt file holds a tensor or a dict of named tensors")


def read(path: Path) -> dict[str, np.ndarray]:
    describe(path)  # one error for a file that is not what its name says
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    if path.suffix == ".npy":
        return {"x": np.load(path, allow_pickle=False)}
    return {k: v.numpy() for k, v in _read_pt(path).items()}


def split_sizes(examples: int, test: int | None, validation: int | None, given_test: bool) -> tuple[int, int, int]:
    """(train, valid, test) sizes: the test split from the end (unless given), then validation."""
    n_test = 0 if given_test else (examples // 10 if test is None else test)
    rest = examples - n_test
    n_valid = rest // 10 if validation is None else validation
    if n_test < 0 or n_valid < 0 or rest - n_valid < 1:
        raise DataError(f"{examples} examples cannot hold a test split of {n_test} and a validation split of {n_valid} "
                        f"with one left to train on")
    return rest - n_valid, n_valid, n_test


def anchored(section: dict[str, Any], base: Path | None) -> dict[str, Any]:
    """A spec's ``data:`` section with a user's file paths made absolute (from ``base``), so
    a run directory's copy of the spec finds the same files."""
    out = dict(section)
    if not is_own(out.get("dataset")):
        return out
    if out["dataset"] != FILES:
        out["dataset"] = str(resolve(out["dataset"], base).resolve())
    if isinstance(out.get("files"), dict):
        out["files"] = {k: str(resolve(v, base).resolve()) for k, v in out["files"].items()}
    return out


def source_files(data, base: Path | None) -> dict[str, Path]:
    """``split -> path`` of the files a spec names (one file: ``all``)."""
    if data.dataset == FILES:
        if not data.files or "train" not in data.files or "test" not in data.files:
            raise DataError("dataset: files needs files: {train: PATH, test: PATH} (and valid: PATH, optionally)")
        return {split: resolve(p, base) for split, p in data.files.items()}
    return {"all": resolve(data.dataset, base)}


def info(data, base: Path | None) -> tuple[dict[str, ArrayInfo], int]:
    """The arrays of a spec's files and the number of training examples before validation is carved."""
    paths = source_files(data, base)
    described = {split: describe(p) for split, p in paths.items()}
    names = None
    for split, arrays in described.items():
        sizes = {a.examples for a in arrays.values()}
        if len(sizes) > 1:
            raise DataError(f"{paths[split]}: its arrays hold different numbers of examples ({sorted(sizes)})")
        if names is not None and set(arrays) != names:
            raise DataError(f"{paths[split]}: holds arrays {sorted(arrays)}, the other files {sorted(names)}")
        names = set(arrays)
    first = described.get("all", described.get("train"))
    if not first:
        raise DataError(f"{next(iter(paths.values()))}: holds no arrays")
    examples = next(iter(first.values())).examples
    if "all" in paths:
        train, valid, _ = split_sizes(examples, data.test, data.validation, False)
        return first, train + valid
    return first, examples


def load(data, base: Path | None):
    """The spec's files as :class:`~hiervae.data.datasets.DataSplits` (arrays as loaded;
    the first array, or the first bound to an observed node, is the primary one)."""
    paths = source_files(data, base)
    loaded = {split: read(p) for split, p in paths.items()}
    if "all" in loaded:
        arrays = loaded["all"]
        n = len(next(iter(arrays.values())))
        train, valid, test = split_sizes(n, data.test, data.validation, False)
        cut = {"train": slice(0, train), "valid": slice(train, train + valid), "test": slice(train + valid, n)}
        splits = {s: {k: v[c] for k, v in arrays.items()} for s, c in cut.items()}
    else:
        splits = {"train": loaded["train"], "test": loaded["test"]}
        if "valid" in loaded:
            splits["valid"] = loaded["valid"]
        else:
            n = len(next(iter(loaded["train"].values())))
            train, valid, _ = split_sizes(n, 0, data.validation, True)
            splits["valid"] = {k: v[train:] for k, v in loaded["train"].items()}
            splits["train"] = {k: v[:train] for k, v in loaded["train"].items()}
    names = list(splits["train"])
    bound = list((data.arrays or {}).values())
    primary = next((a for a in bound if a in names), names[0])

    def tensor(a: np.ndarray) -> torch.Tensor:
        a = np.ascontiguousarray(a)
        return torch.from_numpy(a.astype(np.int64) if a.dtype.kind in "biu" else a.astype(np.float32))

    flat = {s: {k: tensor(v) for k, v in arrays.items()} for s, arrays in splits.items()}
    first = flat["train"][primary]
    name = data.dataset if data.dataset != FILES else str(paths["train"].name)
    source: dict[str, Any] = {"files": {s: str(p.resolve()) for s, p in paths.items()},
                              "sha256": {s: sha256_of(p) for s, p in paths.items()}}
    return DataSplits(
        name=name, train=flat["train"][primary].float(), valid=flat["valid"][primary].float(),
        test=flat["test"][primary].float(), event_shape=(int(np.prod(first.shape[1:])),),
        image_shape=tuple(first.shape[1:]) if first.dim() in (3, 4) else None, binarize=data.binarize or "none",
        dequantize=data.dequantize, extra=flat, primary=primary, source=source, pixels=False)
