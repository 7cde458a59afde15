"""Worker processes reuse shared image buffers (stream/slots.py): the batches are the
thread mode's byte for byte, whether the loop keeps them or not, across epochs, an
abandoned epoch, both layouts and non-persistent workers; buffers and output tensors are
really reused, and a worker with no free buffer falls back to a new segment.

Data: the session's demo dataset (60 train JPEGs, shards of 16), as test_wds_threads.
"""

from __future__ import annotations

import pytest
from test_wds_threads import assert_same, batches, loader

from shardforge.stream import slots as slots_mod
from shardforge.stream.slots import KEPT_OUTPUTS, BatchSlots, SlotRef


def cloned(ld) -> tuple[list[tuple], set[int]]:
    """Each batch with its images cloned (the loop keeps nothing of the loader's), and the
    data pointers of the images the loader yielded."""
    out, ptrs = [], set()
    for images, *rest in ld:
        ptrs.add(images.data_ptr())
        out.append((images.clone(), *rest))
    return out, ptrs


def test_batches_equal_threads_and_buffers_are_reused(demo_dataset) -> None:
    want = loader(demo_dataset, "thread", batch_size=2)
    got = loader(demo_dataset, "process", batch_size=2)    # 15 batches a rank > 6 buffers
    for _ in range(2):                                     # persistent workers: 2 epochs
        expected = batches(want)
        seen, ptrs = cloned(got)
        assert_same(seen, expected)
        assert len(ptrs) <= KEPT_OUTPUTS                   # output tensors reused
    slots = got._slots
    assert slots is not None and slots.per_worker == 3 and len(slots.buffers) == 6
    assert bool(slots.free.all())                          # every buffer handed back


def test_kept_batches_stay_valid(demo_dataset) -> None:
    want, got = loader(demo_dataset, "thread"), loader(demo_dataset, "process")
    kept = [batches(got), batches(got)]                    # held while later ones arrive
    assert_same(kept[0], batches(want))
    assert_same(kept[1], batches(want))


def test_chw_layout(demo_dataset) -> None:
    got = batches(loader(demo_dataset, "process", layout="chw"))
    want = batches(loader(demo_dataset, "thread", layout="chw"))
    assert got[0][0].shape[1] == 3
    assert_same(got, want)


def test_abandoned_epoch_then_the_rest(demo_dataset) -> None:
    def run(kind: str) -> list[tuple]:
        ld = loader(demo_dataset, kind, batch_size=2)
        out = []
        for k, batch in enumerate(ld):
            out.append((batch[0].clone(), *batch[1:]))
            if k == 2:
                break                                      # prefetched batches discarded
        return out + cloned(ld)[0] + cloned(ld)[0]         # the rest, then the next epoch

    assert_same(run("process"), run("thread"))


def test_workers_started_per_iter(demo_dataset) -> None:
    got = loader(demo_dataset, "process", persistent_workers=False)
    want = loader(demo_dataset, "thread")
    first = batches(got)
    slots = got._slots
    second = batches(got)
    assert got._slots is not slots                         # a new set per iter()
    assert_same(first, batches(want))
    assert_same(second, batches(want))


def count_reads(monkeypatch) -> list[int]:
    """Batches the loader copied out of a reused buffer (counted in this process)."""
    reads, read = [], BatchSlots.read

    def counting(self, ref, pin_memory=False):
        reads.append(ref.slot)
        return read(self, ref, pin_memory)

    monkeypatch.setattr(BatchSlots, "read", counting)
    return reads


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_every_batch_comes_through_a_buffer(demo_dataset, monkeypatch, context) -> None:
    reads = count_reads(monkeypatch)
    got = loader(demo_dataset, "process", batch_size=2, multiprocessing_context=context)
    seen, ptrs = cloned(got)
    assert_same(seen, batches(loader(demo_dataset, "thread", batch_size=2)))
    # 15 batches through 6 buffers: the workers see the flags the loader sets
    assert len(reads) == len(seen) == 15 and len(set(reads)) <= 6
    assert len(ptrs) <= KEPT_OUTPUTS and bool(got._slots.free.all())


def test_no_free_buffer_falls_back_to_a_new_segment(demo_dataset, monkeypatch) -> None:
    monkeypatch.setattr(BatchSlots, "take", lambda self, worker: None)   # before the fork
    got = loader(demo_dataset, "process")
    assert_same(batches(got), batches(loader(demo_dataset, "thread")))
    assert bool(got._slots.free.all())                     # none was used


def test_slots_take_read_and_reuse() -> None:
    slots = BatchSlots(2, 2, (3, 2, 2, 3))
    assert [slots.take(1), slots.take(1), slots.take(1)] == [2, 3, None]   # worker 1's own
    assert slots.take(0) == 0
    slots.buffers[2][:] = 7
    first = slots.read(SlotRef(2, 2))
    assert first.shape == (2, 2, 2, 3) and bool((first == 7).all())
    assert slots.take(1) == 2                              # free again after read
    slots.buffers[2][:] = 9
    assert bool((first == 7).all())                        # a copy, not the buffer
    held_ptr = first.data_ptr()
    second = slots.read(SlotRef(2, 3))
    assert second.data_ptr() != held_ptr                   # `first` is still referenced
    del first
    third = slots.read(SlotRef(3, 1))
    assert third.data_ptr() == held_ptr                    # its storage is reused
    view = third[:, 0]
    del third
    assert slots.read(SlotRef(3, 1)).data_ptr() != held_ptr   # a view keeps it
    del view
    slots.reset()
    assert bool(slots.free.all())


def test_outputs_without_a_use_count_are_not_kept(monkeypatch) -> None:
    monkeypatch.setattr(slots_mod, "_storage_refs", lambda t: None)
    slots = BatchSlots(1, 1, (2, 1, 1, 3))
    a = slots.read(SlotRef(0, 2))
    b = slots.read(SlotRef(0, 2))
    assert a.data_ptr() != b.data_ptr() and slots._outputs == []


@pytest.mark.parametrize(("workers", "per_worker"), [(0, 1), (1, 0)])
def test_slots_refuse_empty_sets(workers: int, per_worker: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        BatchSlots(workers, per_worker, (1, 1, 1, 3))


def test_numpy_view_keeps_an_output() -> None:
    slots = BatchSlots(1, 1, (2, 1, 1, 3))
    arr = slots.read(SlotRef(0, 2)).numpy()
    ptr = arr.ctypes.data
    assert slots.read(SlotRef(0, 2)).data_ptr() != ptr
    del arr
    assert slots.read(SlotRef(0, 2)).data_ptr() == ptr
