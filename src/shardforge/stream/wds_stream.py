"""Stream a split of a shardforge dataset's WebDataset tars into PyTorch, sample-exact per rank.

:class:`WdsStream` is a ``torch.utils.data.IterableDataset`` that yields whole batches
``(images, labels)`` (``+ ids`` with ``with_ids``, ``+ keys`` with ``with_keys``):

* ``images``: ``torch.uint8``, ``[B, S_h, S_w, 3]`` RGB (``layout="hwc"``, like FFCV's
  decoders) or ``[B, 3, S_h, S_w]`` (``layout="chw"``: a permuted view of the same memory,
  i.e. ``torch.channels_last``);
* ``labels``: ``torch.int64`` ``[B]``; ``ids`` (``with_ids``): ``torch.int64`` ``[B]``, each
  sample's position in the split (= its row in the split's .beton, ``beton_index``);
  ``keys`` (``with_keys``): ``list[str]``. Tuple order: images, labels, [ids], [keys].

Partitioning (see :mod:`shardforge.stream.partition` for the exact rules): per epoch, a
permutation of the split seeded by ``(seed, epoch)`` is cut into one contiguous slice per
rank. Every rank gets exactly the same number of samples (``remainder="pad"``:
``ceil(N/world_size)``, the permutation's first samples repeated to fill the last slice;
``"drop"``: ``floor(N/world_size)``), hence the same number of batches; the ranks'
samples are disjoint apart from the pad repeats. A rank's samples are cut into batches
of ``batch_size`` (only the last may be short; ``drop_last`` drops it) and DataLoader
worker ``w`` builds batches ``w, w+W, ...``, so the DataLoader yields the rank's batches
in order whatever ``num_workers`` is. With ``worker_kind="thread"``
(:mod:`shardforge.stream.wds_threads`) thread ``w`` of the calling process builds the
same batches (:meth:`WdsStream.build_batch`), byte for byte.

Images are read by byte range from the tars (``index.parquet`` gives shard, offset,
size), a batch's reads grouped per tar, and decoded crop-first with DCT-domain downscaling
(:mod:`shardforge.formats.decode`).

Integrity: at construction every tar of the split is checked to exist with the size
``summary.json`` records (at least the size the index needs); each sample's bytes are
checked against the index's sha256 (``verify=True``, the default: a sha256 costs a few
percent of a decode, BENCHMARKS.md "checksums"). A corrupt sample (checksum mismatch, or
bytes that do not decode to the indexed size) follows ``on_corrupt``
(:mod:`shardforge.stream.faults`): ``"skip"`` (default) replaces it inside its batch,
so batch counts per rank never change, and counts it in ``WdsLoader.faults`` (reset per
epoch, kept in ``state_dict``); ``"strict"`` raises
:class:`~shardforge.stream.faults.CorruptSampleError`. A missing or truncated tar raises
:class:`~shardforge.layout.reader.ShardReadError` either way.

Augmentation randomness is seeded by ``(seed, epoch, rank, position of the batch in the
rank's epoch)``: independent of the number of workers, and the same again after a resume.

:class:`~shardforge.stream.wds_loader.WdsLoader` (from
:func:`~shardforge.stream.wds_loader.make_loader`) is the ``DataLoader`` around a stream,
with ``set_epoch``, ``state_dict`` and ``load_state_dict`` for mid-epoch resume.
"""

from __future__ import annotations

import copy
import logging
from typing import Literal, NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from shardforge.formats.decode import (
    BatchTransform,
    CenterCrop,
    DecodeError,
    RandomResizedCrop,
    decode_crop,
)
from shardforge.layout.dataset import DatasetRef, SplitIndex, open_dataset
from shardforge.layout.reader import RangeReader, shard_min_sizes
from shardforge.layout.reader import check_shards as check_shards_fn
from shardforge.stream.faults import (
    CHECKSUM,
    REASONS,
    UNDECODABLE,
    check_policy,
)
from shardforge.stream.index_cache import open_indexed
from shardforge.stream.partition import (
    ORDERS,
    Order,
    Remainder,
    batch_bounds,
    check_world,
    epoch_order,
    epoch_rng,
    rank_positions,
    samples_per_rank,
    worker_batches,
)
from shardforge.stream.repair import SampleRepair, recorded_sizes
from shardforge.stream.slots import BatchSlots, SlotRef, shared_empty

Layout = Literal["hwc", "chw"]
_AUG_SALT = 0xA06_5EED
DEFAULT_WINDOW = 1024   # samples per shuffle window of order="shards"
log = logging.getLogger(__name__)


class EpochPlan(NamedTuple):
    """One ``iter()``'s plan (:meth:`WdsStream.epoch_plan`): the snapshot of the stream's
    position, the rank's sample positions of the epoch and the batches' ``(lo, hi)``
    bounds counted from ``start``."""

    seed: int
    epoch: int
    start: int
    everything: np.ndarray
    bounds: list[tuple[int, int]]


def _dist_default(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``rank``/``world_size`` as given, else from an initialised ``torch.distributed``."""
    if rank is None or world_size is None:
        dist = torch.distributed
        live = dist.is_available() and dist.is_initialized()
        rank = rank if rank is not None else (dist.get_rank() if live else 0)
        world_size = world_size if world_size is not None else (
            dist.get_world_size() if live else 1)
    return int(rank), int(world_size)


class WdsStream(SampleRepair, IterableDataset):
    """One rank's share of a split, as batches; see the module docstring for the contract.

    ``dataset``: a :class:`DatasetRef` or a dataset location (opened with
    :func:`open_dataset`). ``rank``/``world_size`` default to ``torch.distributed``'s (or
    0/1). ``seed`` must be the same on every rank. ``transform``: a
    :class:`~shardforge.formats.decode.RandomResizedCrop` /
    :class:`~shardforge.formats.decode.CenterCrop` (or anything with their ``output_size``,
    ``plan`` and ``dct``); default ``RandomResizedCrop(224)`` for split ``"train"``, else
    ``CenterCrop(224)``. ``order``: ``"global"`` (uniform permutation, default),
    ``"shards"`` (shards permuted, then samples shuffled within windows of ``window``
    samples, default 1024) or ``"sequential"``. ``verify`` (default on) checks every
    image's sha256 against the index; ``on_corrupt`` (``"skip"`` | ``"strict"``) says what
    a corrupt sample does (module doc); ``check_shards`` (default on) checks every tar's
    size once, here. ``start`` skips that many of the rank's samples of ``epoch`` (what a
    resume sets; :class:`WdsLoader` manages it). ``index_cache``: a dataset location is
    opened through the node's shared, memory-mapped copy of its index
    (:func:`~shardforge.stream.index_cache.open_indexed`; ``True``: in its default folder,
    a path: there), or read into this process's memory (``False``:
    :func:`~shardforge.layout.dataset.open_dataset`).
    """

    def __init__(self, dataset: DatasetRef | str, split: str = "train", batch_size: int = 256,
                 *, rank: int | None = None, world_size: int | None = None, seed: int = 0,
                 epoch: int = 0, transform: BatchTransform | None = None,
                 remainder: Remainder = "pad", drop_last: bool = False,
                 order: Order = "global", window: int | None = None, with_keys: bool = False,
                 layout: Layout = "hwc", verify: bool = True, start: int = 0,
                 with_ids: bool = False, on_corrupt: str = "skip",
                 check_shards: bool = True, index_cache: str | bool = True) -> None:
        super().__init__()
        self.dataset = (open_indexed(dataset, index_cache if isinstance(index_cache, str)
                                     else None) if index_cache else open_dataset(dataset))
        self.split = split
        self.index: SplitIndex = self.dataset.split(split)
        self.rank, self.world_size = _dist_default(rank, world_size)
        check_world(len(self.index), self.world_size, remainder)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside 0..{self.world_size - 1}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if order not in ORDERS:
            raise ValueError(f"order {order!r} is not one of {ORDERS}")
        if layout not in ("hwc", "chw"):
            raise ValueError(f"layout {layout!r} is not 'hwc' or 'chw'")
        self.batch_size = int(batch_size)
        # seed, epoch, start live in shared memory: DataLoader workers (persistent ones
        # included) read them at every iter(), so set_epoch / a resume reach them.
        self._cursor = torch.tensor([int(seed), int(epoch), int(start)], dtype=torch.int64)
        self._cursor.share_memory_()
        self.transform: BatchTransform = transform or (
            RandomResizedCrop(224) if split == "train" else CenterCrop(224))
        self.remainder = remainder
        self.drop_last = bool(drop_last)
        self.order = order
        self.window = int(window) if window is not None else DEFAULT_WINDOW
        self.with_keys = with_keys
        self.with_ids = with_ids
        self.layout = layout
        self.verify = verify
        self.on_corrupt = check_policy(on_corrupt)
        self._shard_sizes = recorded_sizes(self.dataset, self.index)
        self._min_sizes = shard_min_sizes(len(self.index.shard_urls), self.index.shard,
                                          self.index.offset, self.index.size).tolist()
        if check_shards:
            check_shards_fn(self.index.shard_urls, self._shard_sizes, self._min_sizes)
        self._report_faults = False   # WdsLoader: append each batch's faults (it strips them)
        self._faults: list[tuple[int, int]] = []   # (position, reason) of the current batch
        self._ctx: tuple = ()                      # (seed, epoch, rank positions, batch start)
        # set by WdsLoader before its worker processes start (stream/slots.py)
        self._slots: BatchSlots | None = None
        self._worker = 0

    # ------------------------------------------------------------------ position
    @property
    def seed(self) -> int:
        return int(self._cursor[0])

    @seed.setter
    def seed(self, value: int) -> None:
        self._cursor[0] = int(value)

    @property
    def epoch(self) -> int:
        return int(self._cursor[1])

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._cursor[1] = int(value)

    @property
    def start(self) -> int:
        """Samples of the rank's epoch skipped at the next ``iter()``."""
        return int(self._cursor[2])

    @start.setter
    def start(self, value: int) -> None:
        self._cursor[2] = int(value)

    # ------------------------------------------------------------------ the plan
    @property
    def samples_per_rank(self) -> int:
        """Samples every rank gets per epoch (the same on all ranks)."""
        return samples_per_rank(len(self.index), self.world_size, self.remainder)

    def positions(self, epoch: int | None = None, seed: int | None = None) -> np.ndarray:
        """This rank's sample positions (rows of ``self.index``) for ``epoch``, in order."""
        epoch = self.epoch if epoch is None else epoch
        seed = self.seed if seed is None else seed
        perm = epoch_order(len(self.index), seed, epoch, self.order, self.index.shard,
                           self.window)
        return rank_positions(perm, self.rank, self.world_size, self.remainder)

    def num_batches(self, start: int | None = None) -> int:
        """Batches this rank yields for the epoch after skipping ``start`` samples."""
        start = self.start if start is None else start
        remaining = max(0, self.samples_per_rank - start)
        if self.drop_last:
            return remaining // self.batch_size
        return -(-remaining // self.batch_size)

    def __len__(self) -> int:
        return self.num_batches()

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its first sample."""
        self.epoch, self.start = int(epoch), 0

    # ------------------------------------------------------------------ iteration
    def epoch_plan(self) -> EpochPlan:
        """The plan of the next ``iter()``: one snapshot of ``(seed, epoch, start)``, the
        rank's positions for that epoch and the batch bounds of the samples after
        ``start``. Raises ``ValueError`` when ``start`` is outside the rank's epoch."""
        seed, epoch, start = (int(v) for v in self._cursor.tolist())   # one snapshot
        if not 0 <= start <= self.samples_per_rank:
            raise ValueError(f"start {start} is outside 0..{self.samples_per_rank}")
        everything = self.positions(epoch, seed)
        bounds = batch_bounds(len(everything) - start, self.batch_size, self.drop_last)
        return EpochPlan(seed, epoch, start, everything, bounds)

    def open_reader(self) -> RangeReader:
        """A new reader of the split's tars (one per worker process or thread; close it)."""
        return RangeReader(self.index.shard_urls, sizes=self._shard_sizes,
                           min_sizes=self._min_sizes)

    def image_slot_shape(self) -> tuple[int, int, int, int] | None:
        """The shape of one full batch of images, for :class:`~.slots.BatchSlots`; None
        for a stream whose batches are made otherwise (a subclass's ``_batch``)."""
        out_h, out_w = self.transform.output_size
        return (self.batch_size, out_h, out_w, 3)

    def _take_slot(self, shape: tuple[int, ...]) -> int | None:
        """A reused buffer for a batch of ``shape`` (this worker's), or None."""
        slots = self._slots
        if slots is None or shape[1:] != slots.shape[1:] or shape[0] > slots.shape[0]:
            return None
        return slots.take(self._worker)

    def builder(self) -> WdsStream:
        """A shallow copy with its own per-batch fault state, for one worker thread: the
        copies share the index, transform and position, so their batches are the ones
        this stream builds."""
        twin = copy.copy(self)
        twin._faults, twin._ctx = [], ()
        return twin

    def build_batch(self, plan: EpochPlan, b: int, reader: RangeReader,
                    shared: bool = False) -> tuple:
        """Batch ``b`` of ``plan``: the tuple of the module doc, plus the batch's faults
        (``[k, 2]`` int64 ``(position, reason)``) last when a :class:`WdsLoader` reports
        them (else they are logged). Its augmentation generator is seeded by ``(seed,
        epoch, rank, position of the batch in the rank's epoch)``, so the bytes depend on
        nothing else. ``shared``: allocate the images in shared memory (worker processes).
        Not thread-safe: one :meth:`builder` per thread."""
        lo, hi = plan.bounds[b]
        lo, hi = plan.start + lo, plan.start + hi
        rng = epoch_rng(plan.seed, plan.epoch, self.rank, lo, _AUG_SALT)
        self._faults.clear()
        self._ctx = (plan.seed, plan.epoch, plan.everything, lo, hi)
        batch = self._batch(reader, plan.everything[lo:hi], rng, shared=shared)
        if self._report_faults:
            batch += (torch.tensor(self._faults, dtype=torch.int64).reshape(-1, 2),)
        else:
            for p, code in self._faults:
                log.warning("skipped corrupt sample %s (%s)", self.index.key[p], REASONS[code])
        return batch

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            cv2.setNumThreads(1)     # one worker process = one core
        plan = self.epoch_plan()
        reader = self.open_reader()
        self._worker = worker
        try:
            for b in worker_batches(len(plan.bounds), worker, workers):
                yield self.build_batch(plan, b, reader, shared=info is not None)
        finally:
            reader.close()

    def _batch(self, reader: RangeReader, pos: np.ndarray, rng: np.random.Generator,
               shared: bool) -> tuple:
        idx = self.index
        blobs = reader.read(idx.shard[pos], idx.offset[pos], idx.size[pos])
        bad = [0] * len(pos)                    # per slot: 0 = good, else a reason code
        if self.verify:
            for k, p in enumerate(pos.tolist()):
                if not self._hash_ok(p, blobs[k]):
                    bad[k] = self._corrupt(p, CHECKSUM, "its sha256 does not match "
                                                        "index.parquet")
        out_h, out_w = self.transform.output_size
        shape = (len(pos), out_h, out_w, 3)
        # in a worker: one of the loader's reused buffers (stream/slots.py), else a new
        # shared segment; either way handed over without pickling the pixels
        slot = self._take_slot(shape) if shared else None
        if slot is not None:
            images = self._slots.buffers[slot][:len(pos)]
        else:
            images = shared_empty(shape) if shared else torch.empty(shape, dtype=torch.uint8)
        pixels = images.numpy()
        dct = self.transform.dct
        widths, heights = idx.width[pos], idx.height[pos]
        boxes, flips = self.transform.plan(widths, heights, rng)
        scratch = np.empty(int((widths.astype(np.int64) * heights).max()) * 3, np.uint8)
        for k, p in enumerate(pos.tolist()):
            if bad[k]:
                continue
            try:
                decode_crop(blobs[k], bool(idx.is_png[p]), int(widths[k]), int(heights[k]),
                            tuple(boxes[k].tolist()), pixels[k], bool(flips[k]), dct,
                            scratch)
            except (DecodeError, cv2.error) as exc:
                bad[k] = self._corrupt(p, UNDECODABLE, f"it does not decode ({exc})")
        if any(bad):
            pos = self._replace(reader, pos, bad, pixels)
        if slot is not None:
            images = SlotRef(slot, len(pos))     # WdsLoader copies it out, then permutes
        elif self.layout == "chw":
            images = images.permute(0, 3, 1, 2)
        out: tuple = (images, torch.from_numpy(idx.label[pos].astype(np.int64)))
        if self.with_ids:
            out += (torch.from_numpy(pos.astype(np.int64)),)
        if self.with_keys:
            out += (idx.key[pos].tolist(),)
        return out
