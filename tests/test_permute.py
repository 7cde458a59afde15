"""stream/_permute.c: numpy's Generator.permutation, the same values and the same
generator state afterwards; partition.permutation falls back to numpy when the module is
missing or disagrees."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from shardforge.stream import partition
from shardforge.stream.partition import epoch_order, epoch_rng, permutation

_permute = pytest.importorskip("shardforge.stream._permute")


@pytest.mark.parametrize("n", [0, 1, 2, 3, 31, 32, 33, 64, 1000, 65_537, 1_000_003])
@pytest.mark.parametrize("seed", [0, 7])
def test_equals_numpy_values_and_state(n, seed):
    ours, theirs = epoch_rng(seed, n, 5), epoch_rng(seed, n, 5)
    out = np.empty(n, np.int64)
    _permute.permutation(ours.bit_generator.capsule, out)
    assert np.array_equal(out, theirs.permutation(n))
    assert ours.bit_generator.state == theirs.bit_generator.state
    assert ours.integers(0, 1 << 40, 8).tolist() == theirs.integers(0, 1 << 40, 8).tolist()


def test_other_bit_generators_too():
    for make in (np.random.MT19937, np.random.Philox, np.random.SFC64):
        ours, theirs = (np.random.Generator(make(11)) for _ in range(2))
        out = np.empty(5_000, np.int64)
        _permute.permutation(ours.bit_generator.capsule, out)
        assert np.array_equal(out, theirs.permutation(5_000)), make.__name__


def test_epoch_order_is_numpys_permutation():
    assert partition._fast_permutation_ok()
    for n in (1, 10, 300_000):
        for epoch in range(3):
            expected = epoch_rng(3, epoch, partition._ORDER_SALT).permutation(n)
            got = epoch_order(n, 3, epoch)
            assert got.dtype == np.int64 and np.array_equal(got, expected)


def test_bad_arguments_are_refused():
    rng = epoch_rng(0, 0)
    with pytest.raises(ValueError, match="contiguous int64"):
        _permute.permutation(rng.bit_generator.capsule, bytearray(12))
    with pytest.raises(TypeError):                                        # strided
        _permute.permutation(rng.bit_generator.capsule, np.empty((4, 4), np.int64)[:, 1])
    with pytest.raises(TypeError):
        _permute.permutation(rng.bit_generator.capsule, b"\0" * 16)      # read-only
    with pytest.raises(ValueError):
        _permute.permutation(object(), np.empty(4, np.int64))            # not a capsule


def test_threads_with_their_own_generators():
    results: dict[int, np.ndarray] = {}

    def run(k: int) -> None:
        results[k] = permutation(epoch_rng(k, 0), 200_000)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert np.array_equal(results[k], epoch_rng(k, 0).permutation(200_000))


def test_falls_back_to_numpy_when_the_module_disagrees(monkeypatch):
    def wrong(capsule, out):
        np.asarray(out)[:] = np.arange(len(out))

    partition._fast_permutation_ok.cache_clear()
    monkeypatch.setattr(_permute, "permutation", wrong)
    try:
        assert not partition._fast_permutation_ok()
        got = permutation(epoch_rng(1, 2), 1000)
        assert np.array_equal(got, epoch_rng(1, 2).permutation(1000))
    finally:
        monkeypatch.undo()
        partition._fast_permutation_ok.cache_clear()
    assert partition._fast_permutation_ok()
