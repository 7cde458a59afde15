"""The ``DataLoader`` around a :class:`~shardforge.stream.wds_stream.WdsStream`: worker
processes or threads (:mod:`shardforge.stream.wds_threads`), ``set_epoch``, the per-epoch
fault report, and ``state_dict`` / ``load_state_dict`` for mid-epoch resume;
:func:`make_loader` builds both."""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader

from shardforge.formats.decode import (
    BatchTransform,
)
from shardforge.layout.dataset import DatasetRef
from shardforge.stream.faults import (
    MAX_KEYS,
    REASONS,
    FaultReport,
)
from shardforge.stream.partition import (
    Order,
    Remainder,
)
from shardforge.stream.slots import BatchSlots, SlotRef
from shardforge.stream.wds_stream import Layout, WdsStream
from shardforge.stream.wds_threads import thread_batches

WorkerKind = Literal["process", "thread"]
WORKER_KINDS: tuple[str, ...] = ("process", "thread")
# DataLoader arguments that only mean something for worker processes.
_PROCESS_ONLY = ("multiprocessing_context", "worker_init_fn", "timeout", "generator",
                 "pin_memory_device")
_STATE_CHECKED = ("split", "world_size", "num_samples", "remainder", "order", "window")
log = logging.getLogger(__name__)


class WdsLoader(DataLoader):
    """The ``DataLoader`` of a :class:`WdsStream` (``batch_size=None``: batches come whole
    from the stream), with epoch bookkeeping and mid-epoch resume.

    Each ``iter()`` continues the current epoch from the first sample not yet yielded;
    once an epoch is exhausted, the next ``iter()`` starts the next epoch (so a plain
    ``for epoch ...: for batch in loader`` reshuffles). :meth:`set_epoch` jumps to the
    start of another epoch (DistributedSampler style; see there for the current one).
    :meth:`state_dict` is ``{epoch, samples_seen, seed, ...}``, where ``samples_seen``
    counts the samples of this rank's epoch yielded so far (prefetched batches not yet
    yielded do not count); after :meth:`load_state_dict` the loader yields exactly the rest
    of that epoch. ``samples_seen`` is the same on every rank, so one rank's state can be
    restored on all of them. ``persistent_workers=True`` keeps the worker processes
    across epochs (the stream's position is in shared memory, read by the workers at every
    ``iter()``); it is ignored without workers and with threads.
    :attr:`faults` reports the corrupt samples skipped in the current epoch (count, by
    reason, first keys; counted as batches are yielded, so exact; kept across a resume
    through the state dict), and each of the first few is logged at WARNING.

    ``worker_kind``: ``"process"`` (default): ``num_workers`` DataLoader worker processes
    build the batches, writing the images into shared buffers they reuse, which this
    process copies out (:mod:`shardforge.stream.slots`: a new shared segment per batch
    cost a fifth of a sample's CPU in page faults); ``"thread"``: ``num_workers`` threads
    of this process do
    (:mod:`shardforge.stream.wds_threads`; byte-identical batches in the same order,
    without moving them between processes). With threads, ``prefetch_factor`` (default
    2) is the batches each thread keeps ready and ``pin_memory`` has each thread pin the
    batches it builds; the DataLoader's process options are refused.
    With the reused buffers, processes use as little CPU per image as threads (BENCHMARKS.md
    "Loaders"); threads were faster on an idle machine, not on an oversubscribed one
    (README, "Streaming"), hence not the default.
    """

    def __init__(self, stream: WdsStream, num_workers: int = 2,
                 worker_kind: WorkerKind = "process", persistent_workers: bool = False,
                 **kwargs: Any) -> None:
        refused = {"batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn",
                   "drop_last", "in_order"} & set(kwargs)
        if refused:
            raise ValueError(f"WdsLoader sets {sorted(refused)} itself: give batch_size / "
                             "drop_last to the stream (make_loader); order is the stream's")
        if worker_kind not in WORKER_KINDS:
            raise ValueError(f"worker_kind {worker_kind!r} is not one of {WORKER_KINDS}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self._threads = 0
        self._prefetch = 2
        if worker_kind == "thread":
            wrong = sorted(set(kwargs) & set(_PROCESS_ONLY))
            if wrong:
                raise ValueError(f"{wrong} configure worker processes; worker_kind='thread' "
                                 "has none: leave them out, or use worker_kind='process'")
            self._threads, num_workers = num_workers, 0
            prefetch = kwargs.pop("prefetch_factor", None)
            self._prefetch = 2 if prefetch is None else int(prefetch)
            if self._prefetch < 1:
                raise ValueError(f"prefetch_factor must be >= 1, got {prefetch}")
        stream._report_faults = True      # before the workers copy the stream
        # persistent_workers: kept worker processes (never with 0 of them); threads are
        # started per iter(), so it has no meaning for them and is ignored
        super().__init__(stream, batch_size=None, num_workers=num_workers,
                         persistent_workers=persistent_workers and num_workers > 0, **kwargs)
        self._slots: BatchSlots | None = None      # worker processes' reused buffers
        self.worker_kind = worker_kind
        self.stream = stream
        self._seen = stream.start
        self._faults = FaultReport()

    @property
    def faults(self) -> FaultReport:
        """Corrupt samples skipped so far in the current epoch (see the class doc)."""
        return self._faults

    @property
    def epoch(self) -> int:
        return self.stream.epoch

    @property
    def samples_seen(self) -> int:
        return self._seen

    def _exhausted(self) -> bool:
        return self._seen > 0 and self.stream.num_batches(self._seen) == 0

    def set_epoch(self, epoch: int) -> None:
        """Go to epoch ``epoch``: its first sample at the next ``iter()``; but when it is
        the current epoch and not exhausted, keep the position (so a training loop that
        calls ``set_epoch`` after :meth:`load_state_dict` still resumes mid-epoch)."""
        if int(epoch) == self.stream.epoch and not self._exhausted():
            return
        self.stream.set_epoch(epoch)
        self._seen = 0
        self._faults = FaultReport()

    def __len__(self) -> int:
        """Batches the next ``iter()`` yields."""
        return self.stream.num_batches(0 if self._exhausted() else self._seen)

    def __iter__(self):
        if self._exhausted():
            self.stream.set_epoch(self.stream.epoch + 1)
            self._seen = 0
        if self._seen == 0:
            self._faults = FaultReport()
        self.stream.start = self._seen
        idx = self.stream.index
        for batch in self._batches():
            data, faults = batch[:-1], batch[-1]
            for p, code in faults.tolist():
                self._faults.add(str(idx.key[p]), REASONS[code])
                if self._faults.count <= MAX_KEYS:
                    log.warning("skipped corrupt sample %s in %s (%s; on_corrupt=skip); "
                                "%d this epoch", idx.key[p], idx.shard_urls[idx.shard[p]],
                                REASONS[code], self._faults.count)
            self._seen += len(data[1])
            yield data

    def _batches(self):
        """The stream's batches from the worker processes, or from the threads."""
        pin = bool(self.pin_memory) and _accelerator_available()   # as DataLoader does
        if self.worker_kind == "thread":
            yield from thread_batches(self.stream, self._threads, self._prefetch,
                                      pin_memory=pin)
            return
        slots = self._prepare_slots()
        for batch in super().__iter__():
            if isinstance(batch[0], SlotRef):
                images = slots.read(batch[0], pin_memory=pin)
                if self.stream.layout == "chw":
                    images = images.permute(0, 3, 1, 2)
                batch = type(batch)((images, *batch[1:]))
            yield batch

    def _prepare_slots(self) -> BatchSlots | None:
        """The reused image buffers of the worker processes (stream/slots.py), set on the
        stream before DataLoader starts or resumes its workers. Persistent workers keep
        one set, made free again at every ``iter()`` (batches of an abandoned epoch are
        discarded by DataLoader, never handed over; a worker still writing one only
        overwrites another discarded batch). Workers started per ``iter()`` get a new set:
        those of an earlier iterator may still be running."""
        shape = self.stream.image_slot_shape()
        if self.num_workers == 0 or shape is None:
            return None
        if self._slots is not None and self.persistent_workers:
            self._slots.reset()
            return self._slots
        per_worker = (self.prefetch_factor or 2) + 1   # in flight + the one being copied
        self._slots = self.stream._slots = BatchSlots(self.num_workers, per_worker, shape)
        return self._slots

    def state_dict(self) -> dict:
        """Where this rank is: ``epoch``, ``samples_seen`` and ``seed``, plus what must
        match on resume (split, world_size, num_samples, remainder, order, window)."""
        s = self.stream
        return {"epoch": s.epoch, "samples_seen": self._seen, "seed": s.seed,
                "split": s.split, "world_size": s.world_size, "rank": s.rank,
                "num_samples": len(s.index), "samples_per_rank": s.samples_per_rank,
                "remainder": s.remainder, "order": s.order, "window": s.window,
                "batch_size": s.batch_size, "skipped": self._faults.to_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state``: the next ``iter()`` yields the unseen rest of its epoch.

        Raises ``ValueError`` when ``state`` comes from a different partitioning (split,
        world size, number of samples, remainder rule, order; window for
        ``order="shards"``); ``batch_size``
        may differ (positions are counted in samples).
        """
        s = self.stream
        mine = self.state_dict()
        checked = [k for k in _STATE_CHECKED if k != "window" or s.order == "shards"]
        diff = {k: (state.get(k), mine[k]) for k in checked if state.get(k) != mine[k]}
        if diff:
            shown = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"cannot resume: the saved loader state partitions differently "
                             f"({shown})")
        seen = int(state["samples_seen"])
        if not 0 <= seen <= s.samples_per_rank:
            raise ValueError(f"samples_seen {seen} is outside 0..{s.samples_per_rank}")
        s.seed = int(state["seed"])
        s.set_epoch(int(state["epoch"]))
        self._seen = s.start = seen
        self._faults = FaultReport.from_dict(state.get("skipped"))


def make_loader(dataset: DatasetRef | str, split: str = "train", batch_size: int = 256, *,
                num_workers: int = 2, rank: int | None = None, world_size: int | None = None,
                seed: int = 0, epoch: int = 0, transform: BatchTransform | None = None,
                remainder: Remainder = "pad", drop_last: bool = False,
                order: Order = "global", window: int | None = None, with_keys: bool = False,
                layout: Layout = "hwc", verify: bool = True, with_ids: bool = False,
                on_corrupt: str = "skip", check_shards: bool = True,
                index_cache: str | bool = True, persistent_workers: bool = True,
                worker_kind: WorkerKind = "process", **dataloader_kwargs: Any) -> WdsLoader:
    """A :class:`WdsLoader` over a new :class:`WdsStream` (arguments as there).

    ``num_workers`` decoding processes per rank (``worker_kind="process"``), kept across
    epochs unless ``persistent_workers=False``, or decoding threads in this process
    (``worker_kind="thread"``: same batches, see :class:`WdsLoader`); other keyword
    arguments (``pin_memory``, ``prefetch_factor``, ``multiprocessing_context``,
    ``timeout``, ``worker_init_fn``) go to ``torch.utils.data.DataLoader``.
    """
    stream = WdsStream(dataset, split, batch_size, rank=rank, world_size=world_size, seed=seed,
                       epoch=epoch, transform=transform, remainder=remainder,
                       drop_last=drop_last, order=order, window=window, with_keys=with_keys,
                       layout=layout, verify=verify, with_ids=with_ids,
                       on_corrupt=on_corrupt, check_shards=check_shards,
                       index_cache=index_cache)
    return WdsLoader(stream, num_workers=num_workers, worker_kind=worker_kind,
                     persistent_workers=persistent_workers, **dataloader_kwargs)


def _accelerator_available() -> bool:
    """Whether pinned memory can serve a device (``torch.accelerator``, torch >= 2.6;
    CUDA before that)."""
    accelerator = getattr(torch, "accelerator", None)
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()
