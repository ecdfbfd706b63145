"""Suite-wide settings: one torch thread per test process.

The suite runs with pytest-xdist on 2 cores; torch's default of one thread per core in
every worker oversubscribes the machine and makes small models many times slower.
"""

from types import SimpleNamespace

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def one_line():
    """A function returning an error's message after asserting it is a single line."""

    def check(err) -> str:
        text = str(err.value if hasattr(err, "value") else err)
        assert text and "\n" not in text, text
        return text

    return check


# ----------------------------------------------------------------------------- flow models
# Test-local, tiny variants of specs/sere_maf_cifar10.yaml and specs/maf_cifar10.yaml: the
# same node kinds and wiring (spline-coupling bijectors, residual gamma chain, a maf
# likelihood whose base reads gamma(L) and whose MADE l reads z(l)), with mlp encoders, no
# guide `residual` option, and 6 "pixels" instead of 3072.
TINY_SERE_MAF = """
name: tiny-sere-maf
vars: {L: 2}
data: {dataset: none, binarize: none, dequantize: uniform, validation: 8}
networks:
  latent: {mlp: [8], activation: relu, out: 4}
  gauss:  {mlp: [8], activation: relu, separate: true}
  prior:  {mlp: [8], activation: relu, separate: true}
  spline: {mlp: [8], activation: tanh, out_activation: tanh}
  base:   {mlp: [8], activation: relu}
  made:   {mlp: [16], activation: relu}
model:
  - for: l in 1..L
    nodes:
      eps(l):   {latent: 3, dist: normal, given: [z(l-1)], net: prior}
      z(l):     {transform: spline_coupling, input: eps(l), given: [z(l-1)], net: spline, options: {bins: 4, splines: 2, mask_size: 1, bound: 5}}
      gamma(l): {transform: residual, dim: 5, given: [gamma(l-1), z(l)], net: base}
  - x: {observed: [6], dist: maf, given: [gamma(L), z1..z(L)], net: made, options: {flows: 2, mades_per_flow: 2, batch_norm: true, base: unit_rank_normal, base_context: 5, made_context: split, base_hidden: [8], logit_alpha: 0.05}}
guide:
  - for: l in 1..L
    factors:
      eps(l): {dist: normal, given: [x, z(l-1)], encoders: {x: {mlp: [8], activation: relu, out: 6}, z(l-1): latent}, net: gauss}
train: {batch_size: 16, epochs: 1, optimizer: {lr: 3.0e-3}}
eval: {importance_samples: 8, chunk_size: 4, batch_size: 16}
"""

TINY_MAF = """
name: tiny-maf
data: {dataset: none, binarize: none, dequantize: uniform, validation: 8}
model:
  - x: {observed: [6], dist: maf, net: {mlp: [16], activation: relu}, options: {flows: 2, mades_per_flow: 2, batch_norm: true, base: unit_rank_normal, base_hidden: [8], logit_alpha: 0.05}}
train: {batch_size: 16, epochs: 1, optimizer: {lr: 3.0e-3}}
eval: {importance_samples: 8, chunk_size: 4, batch_size: 16}
"""


def tiny_pixels(n: int, dim: int = 6, seed: int = 0) -> torch.Tensor:
    """``n`` correlated 8-bit "images" of ``dim`` pixels as the loaders return them (``k / 255``):
    a shared brightness plus per-pixel noise, so a flow has structure to learn."""
    g = torch.Generator().manual_seed(seed)
    level = torch.rand(n, 1, generator=g) * 200 + 20
    pixels = (level + 25 * torch.randn(n, dim, generator=g)).round().clamp(0, 255)
    return pixels / 255


@pytest.fixture
def flows():
    """The tiny flow specs (``flows.sere_maf``, ``flows.maf``: YAML text) and ``flows.pixels``."""
    return SimpleNamespace(sere_maf=TINY_SERE_MAF, maf=TINY_MAF, pixels=tiny_pixels)


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch):
    """A data directory holding a small CIFAR-10 in the official pickle format
    (``cifar-10-batches-py/``: 5 training batches of 12 images, a test batch of 12) whose
    md5s are made the pinned ones, so ``load_dataset("cifar10", data_dir=...)`` reads it.
    Pixels are correlated (a brightness per image plus noise), so there is something to learn."""
    import hashlib
    import pickle

    import numpy as np

    from hiervae.data import cifar10

    folder = tmp_path / "cifar-data" / cifar10.FOLDER
    folder.mkdir(parents=True)
    digests = {}
    for i, name in enumerate((*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH)):
        rng = np.random.default_rng(i)
        level = rng.uniform(30, 220, (12, 1))
        data = np.clip(np.round(level + 30 * rng.standard_normal((12, cifar10.PIXELS))), 0, 255).astype(np.uint8)
        blob = pickle.dumps({b"data": data, b"labels": [int(v) for v in rng.integers(0, 10, 12)]}, protocol=2)
        (folder / name).write_bytes(blob)
        digests[name] = hashlib.md5(blob).hexdigest()
    monkeypatch.setattr(cifar10, "BATCH_MD5", digests)
    return folder.parent


# Every way a tensor's value reaches Python (on a GPU: a wait for the device).
HOST_SYNCS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__array__")


@pytest.fixture
def forbid_syncs(monkeypatch):
    """``state["on"] = True`` makes every host sync (:data:`HOST_SYNCS`) raise an AssertionError.

    Set it only around the code under test: a sync added there later fails the test,
    on CPU, without a GPU to profile.
    """
    state = {"on": False}

    def patch(name):
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, **kwargs):
            if state["on"]:
                raise AssertionError(f"host sync: Tensor.{name}")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guarded)

    for name in HOST_SYNCS:
        patch(name)
    return state
