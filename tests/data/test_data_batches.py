"""Batches: coverage, determinism per (seed, epoch), dynamic binarisation, sharding."""

from __future__ import annotations

import pytest
import torch

from hiervae.data import Batches


def ids(n: int, d: int = 3) -> torch.Tensor:
    """Row i is filled with the value i, so a batch tells which examples it holds."""
    return torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, d)


def seen(batches) -> list[int]:
    return [int(v) for b in batches for v in b[:, 0]]


def probs(n: int = 64, d: int = 50) -> torch.Tensor:
    return torch.linspace(0.05, 0.95, n * d).reshape(n, d)


@pytest.mark.parametrize("n, batch_size", [(100, 10), (103, 10), (7, 50)])
def test_every_example_exactly_once_per_epoch(n, batch_size):
    b = Batches(ids(n), batch_size, seed=3)
    order = seen(b.epoch(0))
    assert sorted(order) == list(range(n))
    assert order != list(range(n))  # shuffled
    assert len(b) == -(-n // batch_size) == len(list(b.epoch(1)))
    assert [len(x) for x in b.epoch(0)][:-1] == [batch_size] * (len(b) - 1)


def test_drop_last_drops_the_short_batch():
    b = Batches(ids(103), 10, drop_last=True)
    batches = list(b.epoch(0))
    assert len(b) == len(batches) == 10 and all(len(x) == 10 for x in batches)
    assert len(set(seen(batches))) == 100


def test_no_shuffle_keeps_the_order():
    assert seen(Batches(ids(25), 4, shuffle=False).epoch(5)) == list(range(25))


def test_same_seed_and_epoch_give_identical_batches():
    a = list(Batches(probs(), 16, seed=7, binarize=True).epoch(4))
    b = list(Batches(probs(), 16, seed=7, binarize=True).epoch(4))
    assert len(a) == 4 and all(torch.equal(x, y) for x, y in zip(a, b))


def test_epochs_and_seeds_change_the_order():
    b = Batches(ids(200), 20, seed=1)
    assert seen(b.epoch(0)) != seen(b.epoch(1))
    assert seen(b.epoch(0)) != seen(Batches(ids(200), 20, seed=2).epoch(0))


def test_dynamic_binarisation_is_resampled_every_epoch():
    data = probs()
    b = Batches(data, 64, binarize=True, shuffle=False)
    e0, e0_again, e1 = next(b.epoch(0)), next(b.epoch(0)), next(b.epoch(1))
    assert torch.all((e0 == 0) | (e0 == 1)) and e0.dtype == torch.float32
    assert torch.equal(e0, e0_again) and not torch.equal(e0, e1)
    assert e0.mean().item() == pytest.approx(data.mean().item(), abs=0.03)
    assert not torch.equal(Batches(data, 64, binarize=False).epoch(0).__next__().sort(0).values,
                           e0.sort(0).values)


def test_binarisation_respects_certain_pixels():
    data = torch.tensor([[0.0, 1.0, 0.0, 1.0]]).repeat(30, 1)
    for x in Batches(data, 8, binarize=True).epoch(2):
        assert torch.equal(x, data[: len(x)])


def test_without_binarize_batches_are_the_data():
    data = probs()
    for x in Batches(data, 10, seed=1).epoch(0):
        assert not torch.all((x == 0) | (x == 1))


def test_resuming_mid_epoch_replays_the_rest():
    full = list(Batches(probs(), 10, seed=9, binarize=True).epoch(3))
    rest = list(Batches(probs(), 10, seed=9, binarize=True).epoch(3, start_batch=4))
    assert len(rest) == len(full) - 4 and all(torch.equal(x, y) for x, y in zip(full[4:], rest))


def test_set_epoch_selects_what_iter_yields():
    b = Batches(ids(50), 10, seed=4)
    b.set_epoch(6)
    assert seen(b) == seen(b.epoch(6)) != seen(b.epoch(0))


@pytest.mark.parametrize("n, world", [(100, 4), (103, 4), (10, 3)])
def test_shards_are_disjoint_equal_and_cover(n, world):
    shards = [Batches(ids(n), 4, seed=5, rank=r, world_size=world) for r in range(world)]
    orders = [seen(s.epoch(2)) for s in shards]
    assert {len(o) for o in orders} == {n // world} and len({len(s) for s in shards}) == 1
    union = [i for o in orders for i in o]
    assert len(set(union)) == len(union) == n - n % world  # disjoint, only the remainder left out
    perm = Batches(ids(n), n, seed=5).indices(2)  # the single-process permutation of the epoch
    assert set(union) == set(perm[: n - n % world].tolist())


@pytest.mark.parametrize("n, world, per_rank", [(64, 2, 8), (61, 2, 8), (100, 4, 4), (103, 4, 4), (70, 3, 5)])
def test_shards_are_blocks_of_the_single_process_batches(n, world, per_rank):
    """Global batch k = batch k of one process with batch size per_rank * world, and
    every example is binarised the same way whichever rank holds it (also the short
    last batch, of which n % world examples are left out)."""
    data = probs(n, 12)
    single = list(Batches(data, per_rank * world, seed=3, binarize=True).epoch(1))
    shards = [list(Batches(data, per_rank, seed=3, binarize=True, rank=r, world_size=world).epoch(1))
              for r in range(world)]
    assert {len(s) for s in shards} == {len(single)}
    for k, whole in enumerate(single):
        joined = torch.cat([s[k] for s in shards])
        assert torch.equal(joined, whole[: len(joined)]) and len(whole) - len(joined) < world
    ids_single = seen(Batches(ids(n), per_rank * world, seed=3).epoch(1))
    ids_shards = [seen(Batches(ids(n), per_rank, seed=3, rank=r, world_size=world).epoch(1)) for r in range(world)]
    assert ids_shards[0][:per_rank] == ids_single[:per_rank] and ids_shards[-1][:per_rank] == ids_single[(world - 1) * per_rank : world * per_rank]


@pytest.mark.parametrize("kwargs", [dict(batch_size=0), dict(seed=-1), dict(rank=2, world_size=2),
                                    dict(world_size=11)])
def test_bad_arguments(kwargs):
    args = dict(batch_size=4) | kwargs
    with pytest.raises(ValueError):
        Batches(ids(10), **args)


def test_empty_data_and_negative_epoch_are_refused():
    with pytest.raises(ValueError):
        Batches(torch.empty(0, 3), 4)
    with pytest.raises(ValueError):
        next(Batches(ids(10), 4).epoch(-1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_stay_on_the_data_device():
    data = probs().cuda()
    a = list(Batches(data, 16, seed=2, binarize=True).epoch(1))
    b = list(Batches(data, 16, seed=2, binarize=True).epoch(1))
    assert all(x.is_cuda for x in a) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert seen(x.cpu() for x in Batches(ids(40).cuda(), 8, seed=2).epoch(1)) == seen(Batches(ids(40), 8, seed=2).epoch(1))
