"""Build a :class:`~shardforge.stream.wds_stream.WdsStream`'s batches in threads of the
calling process (``make_loader(..., worker_kind="thread")``), instead of DataLoader
worker processes.

Thread ``w`` of ``W`` builds batches ``w, w+W, ...`` of the epoch's plan, exactly as
worker process ``w`` would (same :meth:`~WdsStream.build_batch`, seeded by the batch's
position), so the batches are byte-identical to the process mode's and come out in the
same order. What it saves: a batch is written once, into the tensor the caller receives
(no shared buffer to copy it out of, no messages between processes), and no process is
started. The decode work runs outside the GIL (shardforge's partial JPEG
decode and area resize, OpenCV's ``imdecode`` and ``resize``, ``hashlib``'s sha256 of a
sample and ``os.pread`` release it), so ``W``
threads use up to ``W`` cores; the Python between those calls (a few percent of a
sample's cost) is serialised with the caller's own Python.

Each thread keeps up to ``prefetch`` finished batches ahead (DataLoader's
``prefetch_factor``); an exception in a thread (``on_corrupt="strict"``, a missing tar)
is raised in the caller when its batch is due. Leaving the iteration early (``break``,
garbage collection of the iterator) stops the threads and closes their readers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from shardforge.stream.partition import worker_batches

if TYPE_CHECKING:
    from shardforge.stream.wds_stream import EpochPlan, WdsStream

_POLL_S = 0.05   # how often a thread blocked on a full queue checks for a stop


def _pinned(batch: tuple) -> tuple:
    """``batch`` with its tensors copied into page-locked memory."""
    return tuple(x.pin_memory() if isinstance(x, torch.Tensor) else x for x in batch)


def _put(out: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item`` into ``out``, waiting for room unless ``stop`` is set; False if stopped."""
    while not stop.is_set():
        try:
            out.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _produce(stream: WdsStream, plan: EpochPlan, worker: int, workers: int,
             out: queue.Queue, stop: threading.Event, pin_memory: bool) -> None:
    """Thread body: build this thread's batches of ``plan`` into ``out`` in order; an
    exception goes into ``out`` in place of its batch and ends the thread."""
    reader = None
    try:
        builder = stream.builder()
        reader = stream.open_reader()
        for b in worker_batches(len(plan.bounds), worker, workers):
            if stop.is_set():
                return
            batch = builder.build_batch(plan, b, reader)
            if not _put(out, _pinned(batch) if pin_memory else batch, stop):
                return
    except Exception as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
        _put(out, exc, stop)
    finally:
        if reader is not None:
            reader.close()


def _get(q: queue.Queue, producer: threading.Thread) -> object:
    """The next item of ``q``; RuntimeError if ``producer`` ended without putting one."""
    while True:
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            if not producer.is_alive() and q.empty():
                raise RuntimeError(f"decode thread {producer.name} ended without its next "
                                   "batch (an error that is not an Exception?); see the "
                                   "log above, or use worker_kind='process'") from None


def thread_batches(stream: WdsStream, threads: int, prefetch: int = 2,
                   pin_memory: bool = False) -> Iterator[tuple]:
    """Yield the stream's batches for its current position (one ``iter()``), built by
    ``threads`` threads (0: in the calling thread), each at most ``prefetch`` batches
    ahead; ``pin_memory``: each batch's tensors copied to page-locked memory by the
    thread that built it. The batches and their order are those of ``iter(stream)``
    under a DataLoader with ``threads`` worker processes."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if prefetch < 1:
        raise ValueError(f"prefetch must be >= 1, got {prefetch}")
    plan = stream.epoch_plan()
    if threads == 0:
        reader = stream.open_reader()
        try:
            for b in range(len(plan.bounds)):
                batch = stream.build_batch(plan, b, reader)
                yield _pinned(batch) if pin_memory else batch
        finally:
            reader.close()
        return
    threads = min(threads, max(1, len(plan.bounds)))
    stop = threading.Event()
    queues: list[queue.Queue] = [queue.Queue(prefetch) for _ in range(threads)]
    workers = [threading.Thread(target=_produce, args=(stream, plan, w, threads, queues[w], stop,
                                                        pin_memory),
                                name=f"shardforge-decode-{w}", daemon=True)
               for w in range(threads)]
    for t in workers:
        t.start()
    try:
        for b in range(len(plan.bounds)):
            item = _get(queues[b % threads], workers[b % threads])
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        stop.set()
        for t in workers:
            while t.is_alive():
                for q in queues:          # unblock a thread waiting to put
                    while not q.empty():
                        q.get_nowait()
                t.join(_POLL_S)
