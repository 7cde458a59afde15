"""The WebDataset loader with decoding threads (``make_loader(..., worker_kind="thread")``):
the same batches, bytes and order as with worker processes, mid-epoch resume, the
corrupt-sample policy, and no thread left behind.

Data: the session's demo dataset (60 train JPEGs at most 96 px, shards of 16); faults are
injected into a private copy (the helpers of ``test_reliability_streaming``).
"""

from __future__ import annotations

import os
import shutil
import threading

import pytest
import torch
from test_reliability_streaming import overwrite, rows

from shardforge.stream import (
    CorruptSampleError,
    IntegrityError,
    RandomResizedCrop,
    ShardReadError,
    make_loader,
)

WORLD = 2


def loader(ds: str, kind: str, workers: int = 2, **kw):
    kw.setdefault("transform", RandomResizedCrop(16))
    kw.setdefault("rank", 1)
    kw.setdefault("world_size", WORLD)
    return make_loader(ds, "train", kw.pop("batch_size", 4), num_workers=workers, seed=5,
                       with_keys=True, with_ids=True, worker_kind=kind, **kw)


def batches(ld) -> list[tuple]:
    return [tuple(batch) for batch in ld]


def assert_same(got: list[tuple], want: list[tuple]) -> None:
    """Byte-equal images, equal labels / ids / keys, batch by batch."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[0].dtype == w[0].dtype == torch.uint8 and g[0].shape == w[0].shape
        assert torch.equal(g[0], w[0])
        assert torch.equal(g[1], w[1]) and torch.equal(g[2], w[2])
        assert g[3] == w[3]


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("shardforge-decode")]


@pytest.fixture
def copy(demo_dataset, tmp_path) -> str:
    dest = str(tmp_path / "ds")
    shutil.copytree(demo_dataset, dest)
    return dest


@pytest.mark.parametrize("layout", ["hwc", "chw"])
def test_threads_give_the_process_batches_byte_for_byte(demo_dataset, layout):
    procs = loader(demo_dataset, "process", layout=layout)
    threads = loader(demo_dataset, "thread", layout=layout)
    for epoch in range(2):                      # the second iter() rolls over to epoch 1
        want = batches(procs)
        got = batches(threads)
        assert procs.epoch == threads.epoch == epoch
        assert len(want) == 8                   # 30 samples of rank 1, batches of 4
        assert_same(got, want)
    assert len(decode_threads()) == 0
    # the thread count changes nothing either (0 = in the calling thread)
    for workers in (0, 1, 3):
        other = loader(demo_dataset, "thread", workers, layout=layout, epoch=1)
        assert_same(batches(other), want)


def test_thread_mode_resumes_mid_epoch(demo_dataset):
    full = batches(loader(demo_dataset, "process", epoch=3))
    interrupted = loader(demo_dataset, "thread", epoch=3)
    head = []
    for batch in interrupted:
        head.append(tuple(batch))
        if len(head) == 3:
            break
    assert len(decode_threads()) == 0           # leaving early stops the threads
    state = interrupted.state_dict()
    assert (state["epoch"], state["samples_seen"]) == (3, 12)
    resumed = loader(demo_dataset, "thread")
    resumed.load_state_dict(state)
    assert len(resumed) == len(full) - 3
    tail = batches(resumed)
    assert_same(head + tail, full)
    # a process-mode loader resumes from the thread-mode state to the same samples
    procs = loader(demo_dataset, "process")
    procs.load_state_dict(state)
    assert_same(batches(procs), tail)


def test_thread_mode_skips_a_corrupt_sample_like_process_mode(copy):
    bad = rows(copy)[21]
    overwrite(copy, bad, 0, b"\0" * 64)                       # SOI + headers gone
    counts = 0
    for rank in range(WORLD):
        procs, threads = (loader(copy, kind, rank=rank) for kind in ("process", "thread"))
        want, got = batches(procs), batches(threads)
        assert_same(got, want)
        assert threads.faults.to_dict() == procs.faults.to_dict()
        assert threads.state_dict()["skipped"] == procs.state_dict()["skipped"]
        counts += threads.faults.count
        if threads.faults.count:
            assert threads.faults.keys == [bad["key"]]
            assert threads.faults.by_reason == {"checksum": 1}
            assert all(bad["key"] not in b[3] for b in got)
    assert counts == 1


def test_thread_mode_whole_batch_corrupt_takes_a_spare(copy):
    order = [r["key"] for r in rows(copy)]
    overwrite(copy, rows(copy)[7], 0, b"\0" * 64)
    kw = dict(batch_size=1, order="sequential", rank=0, world_size=1)
    want = batches(loader(copy, "process", **kw))
    threads = loader(copy, "thread", 3, **kw)
    got = batches(threads)
    assert [k for b in got for k in b[3]] == order[:7] + [order[8]] + order[8:]
    assert_same(got, want)
    assert threads.faults.count == 1 and threads.faults.keys == [order[7]]


@pytest.mark.parametrize("verify", [True, False], ids=["sha256", "decode"])
def test_thread_mode_strict_raises_and_stops_its_threads(copy, verify):
    bad = rows(copy)[21]
    overwrite(copy, bad, 0, b"\0" * 64)
    error = IntegrityError if verify else CorruptSampleError
    with pytest.raises(error) as info:
        batches(loader(copy, "thread", rank=0, world_size=1, verify=verify,
                       on_corrupt="strict"))
    assert bad["key"] in str(info.value) and bad["shard"] in str(info.value)
    assert len(decode_threads()) == 0


def test_thread_mode_arguments(demo_dataset):
    with pytest.raises(ValueError, match="worker_kind 'fiber'"):
        loader(demo_dataset, "fiber")
    with pytest.raises(ValueError, match=r"\['worker_init_fn'\].*worker_kind='process'"):
        loader(demo_dataset, "thread", worker_init_fn=print)
    with pytest.raises(ValueError, match="prefetch_factor must be >= 1"):
        loader(demo_dataset, "thread", prefetch_factor=0)
    one_ahead = loader(demo_dataset, "thread", prefetch_factor=1, pin_memory=True)
    assert_same(batches(one_ahead), batches(loader(demo_dataset, "process")))


def test_thread_mode_missing_tar_raises_in_the_caller(copy):
    """A tar removed after the loader was made: its first read in a thread raises
    ShardReadError (naming the tar) in the caller, and no thread is left running."""
    tar = os.path.join(copy, "wds", rows(copy)[40]["shard"])
    ld = loader(copy, "thread", rank=0, world_size=1, check_shards=False)
    os.remove(tar)
    with pytest.raises(ShardReadError, match="missing.*re-stage") as info:
        batches(ld)
    assert tar in str(info.value)
    assert len(decode_threads()) == 0
