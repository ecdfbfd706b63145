"""Uniform dequantisation: per-batch noise in Batches (rank-independent), fixed noise for
valid/test at load time, the `data.dequantize` key, and the values staying inside [0, 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiervae.data import EVAL_SEEDS, Batches, DataSplits, load_dataset
from hiervae.data.dequantize import dequantize, dequantize_fixed
from hiervae.errors import DataError
from hiervae.language import parse_spec


def pixels(n: int = 40, d: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, d), generator=g).float() / 255


def check_in_bins(v: torch.Tensor, x: torch.Tensor) -> None:
    """Every value lies in its pixel's bin [k/256, (k+1)/256), strictly below 1."""
    k = torch.round(x * 255)
    assert (v >= k / 256).all() and (v < (k + 1) / 256).all() and (v < 1).all()


def test_batches_dequantise_each_batch_afresh_and_reproducibly():
    x = pixels()
    b = Batches(x, 8, seed=4, dequantize=True, shuffle=False)
    first, again, other = list(b.epoch(0)), list(b.epoch(0)), list(b.epoch(1))
    for v, w, u, rows in zip(first, again, other, x.split(8)):
        check_in_bins(v, rows)
        check_in_bins(u, rows)
        assert torch.equal(v, w)  # a function of (seed, epoch, batch)
        assert not torch.equal(v, u)  # fresh noise every epoch
    noise = torch.cat(first) * 256 - torch.round(x * 255)  # u = 256 v - k ~ U[0, 1)
    assert abs(noise.mean().item() - 0.5) < 0.05 and abs(noise.var().item() - 1 / 12) < 0.02
    assert not torch.equal(torch.cat(first), torch.cat(list(Batches(x, 8, seed=5, dequantize=True, shuffle=False).epoch(0))))


@pytest.mark.parametrize("world", [2, 4])
def test_dequantisation_noise_does_not_depend_on_the_rank(world):
    """Rank r's rows of global batch k get the noise one process gives them."""
    x = pixels(48)
    single = list(Batches(x, 4 * world, seed=1, dequantize=True).epoch(2))
    shards = [list(Batches(x, 4, seed=1, dequantize=True, rank=r, world_size=world).epoch(2)) for r in range(world)]
    for k, whole in enumerate(single):
        torch.testing.assert_close(torch.cat([s[k] for s in shards]), whole, rtol=0, atol=0)


def test_binarize_and_dequantize_exclude_each_other():
    with pytest.raises(ValueError, match="exclude each other"):
        Batches(pixels(), 4, binarize=True, dequantize=True)


def test_a_white_pixel_stays_below_one():
    """(255 + u) / 256 rounds to 1.0 in float32 for u close to 1; logit(1) is infinite."""
    white = torch.ones(3)
    v = dequantize(white, torch.tensor([0.0, 0.999999, 1 - 2 ** -24]))
    assert (v < 1).all() and v[0] == 255 / 256
    assert (dequantize(white.double(), 1 - 2 ** -53) < 1).all()


def test_fixed_dequantisation_is_reproducible_and_in_bins():
    x = pixels(30).numpy()
    a, b, c = dequantize_fixed(x, 7), dequantize_fixed(x, 7), dequantize_fixed(x, 8)
    assert a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, c)
    check_in_bins(torch.from_numpy(a), torch.from_numpy(x))
    # the noise is numpy's legacy stream, row-major: the same as drawing it by hand
    u = np.random.RandomState(7).random_sample(x.shape).astype(np.float32)
    np.testing.assert_array_equal(a, ((np.round(x * 255) + u) / 256).astype(np.float32))


def test_load_dataset_dequantises_valid_and_test_once(monkeypatch):
    """train stays on the pixel grid (Batches adds noise); valid/test get fixed noise."""
    from hiervae.data import DATASETS
    from hiervae.data.base import RawData, Source

    train, test = pixels(20).numpy(), pixels(6, seed=1).numpy()
    source = Source(lambda d, dl: RawData(train, test, (3, 2, 2)), "none", 5, "fake 8-bit images", binarize_modes=("none",))
    monkeypatch.setitem(DATASETS._entries, "fake8", source)
    splits = load_dataset("fake8", dequantize="uniform")
    assert splits.dequantized and not splits.dynamic
    assert torch.equal(splits.train, torch.from_numpy(train[:15]))
    np.testing.assert_array_equal(splits.valid.numpy(), dequantize_fixed(train[15:], EVAL_SEEDS["valid"]))
    np.testing.assert_array_equal(splits.test.numpy(), dequantize_fixed(test, EVAL_SEEDS["test"]))
    # the train split as evaluation sees it: one fixed dequantisation, the same every call
    fixed = splits.fixed("train")
    check_in_bins(fixed, splits.train)
    assert torch.equal(fixed, splits.fixed("train")) and splits.fixed("test") is splits.test
    plain = load_dataset("fake8")
    assert plain.dequantize == "none" and torch.equal(plain.valid, torch.from_numpy(train[15:]))
    assert plain.fixed("train") is plain.train


def test_load_dataset_refuses_bad_dequantize_settings(one_line):
    with pytest.raises(DataError) as err:
        load_dataset("digits", binarize="dynamic", dequantize="uniform")
    assert "needs binarize 'none'" in one_line(err)
    with pytest.raises(DataError) as err:
        load_dataset("digits", binarize="none", dequantize="gaussian")
    assert "dequantize must be one of none, uniform" in one_line(err)


def test_data_spec_key(one_line):
    base = "name: t\ndata: {dataset: cifar10, binarize: none%s}\nmodel:\n  - x: {observed: [4], dist: normal}\n"
    assert parse_spec(base % "").document.data.dequantize == "none"
    assert parse_spec(base % ", dequantize: uniform").document.data.dequantize == "uniform"
    from hiervae.errors import SpecError

    with pytest.raises(SpecError) as err:
        parse_spec(base % ", dequantize: gaussian", file="t.yaml")
    assert one_line(err).startswith("t.yaml:2: data.dequantize")


def test_datasplits_default_is_not_dequantised():
    t = torch.zeros(2, 3)
    assert not DataSplits("x", t, t, t, (3,), (1, 3), "none").dequantized
