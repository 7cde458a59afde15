"""Shared-memory image buffers that DataLoader worker processes reuse from batch to batch.

Why (measured, bench/loaders.py and a microbenchmark on the 2-CPU dev machine): a batch
of 128 160x160 images in a *new* shared-memory segment cost its worker about 8 ms of
page faults and zeroing (9.8 MB of fresh pages; 0.12 ms to write the same bytes into a
segment used before), about 60 µs per image or a fifth of a sample's CPU, and worker
processes ran at 0.73x of two cores' decode rate where threads, which have no segment
per batch, ran at 0.88x. With the buffers reused: processes 0.89-0.91x, threads 0.87x
(BENCHMARKS.md "Loaders", two runs on 2026-12-06).

How: before the workers start, the loader allocates ``per_worker`` buffers of one full
batch per worker (:class:`BatchSlots`; untouched, so they cost nothing until used) and a
shared ``free`` flag per buffer. A worker takes a free buffer of its own, writes the
batch's images into it and sends only a :class:`SlotRef` (which buffer, how many rows);
the loader copies the rows out into a tensor of its own (:meth:`BatchSlots.read`) and
marks the buffer free again. The caller's tensor is therefore never shared with a
worker, and a batch the training loop keeps stays valid; it is one of a few tensors the
loader reuses once nothing references them any more (a new one would cost the page
faults again, in this process). When a worker finds none of its
buffers free, it allocates a fresh segment and sends it, as before, so nothing waits.

Memory: ``workers x (prefetch_factor + 1)`` full batches of shared memory for the
loader's life, plus up to KEPT_OUTPUTS batches in the loader's process (e.g. 8 workers,
batch 256 at 224 px: 0.9 GB of /dev/shm per rank, where DataLoader's own per-batch
segments peaked at two thirds of that, freed as batches were consumed).

A buffer's flag is written by one side at a time: the worker clears it only when it is
set (free) and the loader sets it only after copying a batch out, so no lock is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def shared_empty(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor of ``shape`` allocated in shared memory.

    ``torch.empty(...).share_memory_()`` would allocate it privately first and then
    copy it into a new shared segment (about half the cost of a batch's buffer); the
    storage is created shared instead (``UntypedStorage._new_shared``, what
    ``share_memory_`` itself calls), falling back to ``share_memory_`` where a torch
    build lacks it."""
    nbytes = int(np.prod(shape))
    new_shared = getattr(torch.UntypedStorage, "_new_shared", None)
    if new_shared is None:
        return torch.empty(shape, dtype=torch.uint8).share_memory_()
    return torch.empty(0, dtype=torch.uint8).set_(new_shared(nbytes)).view(shape)


# Batch tensors kept for reuse in the loader's process: the one the training loop still
# holds while the next is copied out, and a little slack for loops that keep one more.
KEPT_OUTPUTS = 4


def _storage_refs(t: torch.Tensor) -> int | None:
    """How many tensors (views included) share ``t``'s storage, plus one for the
    temporary storage object made to ask; None where torch has no such count."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return None if count is None else int(count(t.untyped_storage()._cdata))


@dataclass(frozen=True)
class SlotRef:
    """The images of a batch, left in buffer ``slot`` of the loader's
    :class:`BatchSlots`: its first ``rows`` rows."""

    slot: int
    rows: int


class BatchSlots:
    """``per_worker`` shared buffers of shape ``shape`` (one full batch of HWC uint8
    images) for each of ``workers`` worker processes, and their free flags."""

    def __init__(self, workers: int, per_worker: int, shape: tuple[int, ...]) -> None:
        if workers < 1 or per_worker < 1:
            raise ValueError(f"need >= 1 worker and buffer, got {workers} and {per_worker}")
        self.per_worker = per_worker
        self.shape = tuple(shape)
        self.free = torch.ones(workers * per_worker, dtype=torch.uint8).share_memory_()
        self._flags = self.free.numpy()           # the same bytes, read one at a time
        self.buffers = [shared_empty(self.shape) for _ in range(workers * per_worker)]
        self._outputs: list[torch.Tensor] = []     # reused by read(), see _output
        self._alone: int | None = None

    def __getstate__(self) -> dict:
        """For workers started by spawn or forkserver: the shared tensors travel as
        handles (torch's reductions); the numpy view of the flags is remade there, and
        the loader's own output tensors stay behind."""
        state = dict(self.__dict__, _outputs=[], _alone=None)
        del state["_flags"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._flags = self.free.numpy()

    def take(self, worker: int) -> int | None:
        """A free buffer of worker ``worker``, now marked taken; None when all of its
        buffers hold batches the loader has not copied out yet."""
        # flag by flag through numpy: the loader sets flags meanwhile, and torch's
        # nonzero() over memory that changes between its count and its fill fails an
        # internal assert (seen in the slow end-to-end training tests)
        flags = self._flags
        for slot in range(worker * self.per_worker, (worker + 1) * self.per_worker):
            if flags[slot]:
                flags[slot] = 0
                return slot
        return None

    def read(self, ref: SlotRef, pin_memory: bool = False) -> torch.Tensor:
        """The batch's images copied into a tensor of the caller's process (page-locked
        with ``pin_memory``); the buffer is free again when this returns."""
        rows = self.buffers[ref.slot][:ref.rows]
        if pin_memory:
            out = torch.empty(rows.shape, dtype=rows.dtype, pin_memory=True)
        else:
            out = self._output(ref.rows)
        # numpy's single-threaded copy: torch's copy_ (OpenMP, 2 threads) of a 9.8 MB batch
        # took 4.7 ms while both cores were busy, as worker processes keep them, and
        # 0.4-0.6 ms idle; numpy's 0.3 ms busy (20 copies each, dev machine)
        np.copyto(out.numpy(), rows.numpy())
        self._flags[ref.slot] = 1
        return out

    def _output(self, rows: int) -> torch.Tensor:
        """``rows`` rows of a private batch tensor that nothing outside this object still
        references (a view of it, a numpy array made from it: any of these keeps it), or
        of a new one. A new batch-sized tensor costs the same fresh-page faults in this
        process as a new segment costs a worker; one of the few kept here costs none."""
        for base in self._outputs:
            if _storage_refs(base) == self._alone:
                return base[:rows]
        base = torch.empty(self.shape, dtype=torch.uint8)
        if len(self._outputs) < KEPT_OUTPUTS and _storage_refs(base) is not None:
            self._alone = _storage_refs(base)
            self._outputs.append(base)
        return base[:rows]

    def reset(self) -> None:
        """Every buffer free: for a new ``iter()`` of persistent workers, whose previous
        batches DataLoader discards without handing them over (see
        :class:`~shardforge.stream.wds_loader.WdsLoader`)."""
        self.free.fill_(1)
