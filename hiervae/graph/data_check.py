"""The ``data:`` section against the model, before any data is loaded.

:func:`resolve_data` fills the dataset's own defaults and refuses what cannot work, each
problem one line at its key: unknown datasets and options, a user's files that are missing
or are not what their names say (only their headers are read), observed nodes bound to
arrays the data does not hold or of another size, labels bound to a node that cannot
hold them, and a continuous density put on pixels that are not dequantised (its
likelihood would grow without bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hiervae.data import DataOptionError, resolve_options
from hiervae.data import own
from hiervae.data.datasets import BINARIZE_MODES
from hiervae.data.dequantize import DEQUANTIZE_MODES
from hiervae.errors import DataError, SpecError
from hiervae.graph.ir import OBSERVED, ModelNode
from hiervae.language import Spec
from hiervae.language.schema import DataSpec
from hiervae.nn import FAMILIES

NO_DATASET = "none"
IMAGES, LABELS = "images", "labels"


@dataclass(frozen=True)
class ArrayShape:
    features: int  # values per example
    integer: bool
    pixels: bool  # 8-bit (or binarised) pixel values: a density on them needs dequantisation
    shape: tuple[int, ...] = ()


def resolve_data(spec: Spec, nodes: dict[str, ModelNode]) -> DataSpec:
    """The data section with the dataset's defaults where a key is unset, checked against
    the observed ``nodes`` (see the module docstring).  ``dataset: none`` (or unset) is a
    model without data: checked, rendered and compiled, not trained."""
    data = spec.document.data
    at = lambda key: spec.source.at(("data", key))  # noqa: E731
    if data.dataset in (None, NO_DATASET):
        return data.model_copy(update={"dataset": NO_DATASET, "binarize": data.binarize or "none"})
    if own.is_own(data.dataset):
        data, arrays = _own(data, spec, at)
    else:
        try:
            source, binarize, validation = resolve_options(data.dataset, data.binarize, data.validation, data.dequantize)
        except DataOptionError as err:
            raise SpecError(str(err), at(err.key)) from None
        if data.dataset == "idx" and data.checksum != "none":
            raise SpecError("dataset idx reads your own IDX files from data_dir without checking them: say so with "
                            "checksum: none", at("dataset"))
        if data.checksum is not None and data.dataset != "idx":
            raise SpecError(f"{data.dataset} is checked against its published checksums; checksum: none is for "
                            f"dataset idx", at("checksum"))
        data = data.model_copy(update={"binarize": binarize, "validation": validation})
        arrays = {}
        if source.image_shape is not None:
            arrays[IMAGES] = ArrayShape(math.prod(source.image_shape), False, True, source.image_shape)
        if source.classes is not None:
            arrays[LABELS] = ArrayShape(1, True, False)
    for key in ("files", "test"):
        if getattr(data, key) is not None and not own.is_own(data.dataset):
            raise SpecError(f"{key} is for a user's own files (dataset: PATH or files), not {data.dataset!r}", at(key))
    _check_bindings(nodes, data, arrays, spec)
    return data


def _own(data: DataSpec, spec: Spec, at):
    binarize = data.binarize or "none"
    if binarize not in BINARIZE_MODES:
        raise SpecError(f"binarize must be one of {', '.join(BINARIZE_MODES)}, got {binarize!r}", at("binarize"))
    if data.dequantize not in DEQUANTIZE_MODES:
        raise SpecError(f"dequantize must be one of {', '.join(DEQUANTIZE_MODES)}, got {data.dequantize!r}", at("dequantize"))
    if data.dequantize != "none" and binarize != "none":
        raise SpecError(f"dequantize {data.dequantize!r} needs binarize 'none', got {binarize!r}", at("dequantize"))
    if data.checksum is not None:
        raise SpecError("checksum: none is for dataset idx; a user's files are recorded by their sha256 in the run",
                        at("checksum"))
    try:
        infos, train_pool = own.info(data, spec.directory)
    except DataError as err:
        raise SpecError(str(err), at("files" if data.dataset == own.FILES else "dataset")) from None
    if own.is_own(data.dataset) and data.dataset != own.FILES and data.files is not None:
        raise SpecError("files: is read with dataset: files only", at("files"))
    arrays = {name: ArrayShape(math.prod(i.shape), i.integer, False, i.shape) for name, i in infos.items()}
    if data.validation is not None and data.validation >= train_pool and data.dataset == own.FILES and "valid" not in (data.files or {}):
        raise SpecError(f"validation {data.validation} leaves nothing of the {train_pool} training examples", at("validation"))
    return data.model_copy(update={"binarize": binarize}), arrays


def _check_bindings(nodes: dict[str, ModelNode], data: DataSpec, arrays: dict[str, ArrayShape], spec: Spec) -> None:
    observed = [n for n in nodes.values() if n.kind == OBSERVED]
    bound = dict(data.arrays or {})
    for name in bound:
        if name not in nodes or nodes[name].kind != OBSERVED:
            raise SpecError(f"data.arrays binds {name!r}, which is not an observed node (observed: "
                            f"{', '.join(n.name for n in observed)})", spec.source.at(("data", "arrays", name)))
    if not arrays:
        return  # a dataset that does not say its shapes before loading: checked when bound
    first = next(iter(arrays))
    for node in observed:
        array = bound.get(node.name)
        where = spec.source.at(("data", "arrays", node.name)) if array is not None else node.location
        if array is None:
            if len(observed) > 1:
                raise SpecError(f"observed node {node.name!r} is bound to no array: set data.arrays.{node.name} "
                                f"(arrays: {', '.join(arrays)})", node.location)
            array = first
        if array not in arrays:
            raise SpecError(f"dataset {data.dataset!r} has no array {array!r} (arrays: {', '.join(arrays)})", where)
        shape = arrays[array]
        if node.family == "categorical":
            if not shape.integer or shape.features not in (1, node.dim):
                raise SpecError(f"observed node {node.name!r} is categorical; array {array!r} must hold one integer "
                                f"label per example (or {node.dim} one-hot values)", where)
            continue
        if node.dim != shape.features:
            dims = "x".join(map(str, shape.shape)) if len(shape.shape) > 1 else ""
            raise SpecError(f"observed node {node.name!r} has {node.dim} features but dataset {data.dataset!r} has "
                            f"{shape.features} per example (array {array!r}" + (f", {dims}" if dims else "") +
                            f"): set `observed: [{shape.features}]`", node.location)
        family = FAMILIES.get(node.family)
        if family.continuous and shape.pixels and data.dequantize == "none":
            raise SpecError(f"observed node {node.name!r} has a continuous density ({node.family}) but dataset "
                            f"{data.dataset!r} holds {'binary' if data.binarize != 'none' else '8-bit'} pixels: "
                            f"set data.dequantize: uniform (with binarize: none), or use a discrete likelihood",
                            node.location)
