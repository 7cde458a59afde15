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
in order whatever ``num_workers`` is.

Images are read by byte range from the tars (``index.parquet`` gives shard, offset,
size), a batch's reads grouped per tar, and decoded crop-first with DCT-domain downscaling
(:mod:`shardforge.stream.decode`). Augmentation randomness is seeded by
``(seed, epoch, rank, position of the batch in the rank's epoch)``: independent of the
number of workers, and the same again after a resume.

:class:`WdsLoader` (from :func:`make_loader`) is the ``DataLoader`` around a stream, with
``set_epoch``, ``state_dict`` and ``load_state_dict`` for mid-epoch resume.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from shardforge.stream.dataset import DatasetRef, SplitIndex, open_dataset
from shardforge.stream.decode import (
    BatchTransform,
    CenterCrop,
    DecodeError,
    RandomResizedCrop,
    decode_crop,
)
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
from shardforge.stream.reader import RangeReader

Layout = Literal["hwc", "chw"]
_AUG_SALT = 0xA06_5EED
_STATE_CHECKED = ("split", "world_size", "num_samples", "remainder", "order", "window")
DEFAULT_WINDOW = 1024   # samples per shuffle window of order="shards"


class IntegrityError(ValueError):
    """A sample's bytes do not match the sha256 recorded in the index."""


def _dist_default(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``rank``/``world_size`` as given, else from an initialised ``torch.distributed``."""
    if rank is None or world_size is None:
        dist = torch.distributed
        live = dist.is_available() and dist.is_initialized()
        rank = rank if rank is not None else (dist.get_rank() if live else 0)
        world_size = world_size if world_size is not None else (
            dist.get_world_size() if live else 1)
    return int(rank), int(world_size)


class WdsStream(IterableDataset):
    """One rank's share of a split, as batches; see the module docstring for the contract.

    ``dataset``: a :class:`DatasetRef` or a dataset location (opened with
    :func:`open_dataset`). ``rank``/``world_size`` default to ``torch.distributed``'s (or
    0/1). ``seed`` must be the same on every rank. ``transform``: a
    :class:`~shardforge.stream.decode.RandomResizedCrop` /
    :class:`~shardforge.stream.decode.CenterCrop` (or anything with their ``output_size``,
    ``plan`` and ``dct``); default ``RandomResizedCrop(224)`` for split ``"train"``, else
    ``CenterCrop(224)``. ``order``: ``"global"`` (uniform permutation, default),
    ``"shards"`` (shards permuted, then samples shuffled within windows of ``window``
    samples, default 1024) or ``"sequential"``. ``verify`` checks every
    image's sha256 against the index. ``start`` skips that many of the rank's samples of
    ``epoch`` (what a resume sets; :class:`WdsLoader` manages it).
    """

    def __init__(self, dataset: DatasetRef | str, split: str = "train", batch_size: int = 256,
                 *, rank: int | None = None, world_size: int | None = None, seed: int = 0,
                 epoch: int = 0, transform: BatchTransform | None = None,
                 remainder: Remainder = "pad", drop_last: bool = False,
                 order: Order = "global", window: int | None = None, with_keys: bool = False,
                 layout: Layout = "hwc", verify: bool = False, start: int = 0,
                 with_ids: bool = False) -> None:
        super().__init__()
        self.dataset = open_dataset(dataset)
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
    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None:
            cv2.setNumThreads(1)     # one worker process = one core
        seed, epoch, start = (int(v) for v in self._cursor.tolist())   # one snapshot
        if not 0 <= start <= self.samples_per_rank:
            raise ValueError(f"start {start} is outside 0..{self.samples_per_rank}")
        positions = self.positions(epoch, seed)[start:]
        bounds = batch_bounds(len(positions), self.batch_size, self.drop_last)
        reader = RangeReader(self.index.shard_urls)
        try:
            for b in worker_batches(len(bounds), worker, workers):
                lo, hi = bounds[b]
                rng = epoch_rng(seed, epoch, self.rank, start + lo, _AUG_SALT)
                yield self._batch(reader, positions[lo:hi], rng, shared=info is not None)
        finally:
            reader.close()

    def _batch(self, reader: RangeReader, pos: np.ndarray, rng: np.random.Generator,
               shared: bool) -> tuple:
        idx = self.index
        blobs = reader.read(idx.shard[pos], idx.offset[pos], idx.size[pos])
        if self.verify:
            self._check(pos, blobs)
        out_h, out_w = self.transform.output_size
        images = torch.empty((len(pos), out_h, out_w, 3), dtype=torch.uint8)
        if shared:
            images.share_memory_()   # the worker hands it over without another copy
        pixels = images.numpy()
        dct = self.transform.dct
        widths, heights = idx.width[pos], idx.height[pos]
        boxes, flips = self.transform.plan(widths, heights, rng)
        for k, p in enumerate(pos.tolist()):
            try:
                decode_crop(blobs[k], bool(idx.is_png[p]), int(widths[k]), int(heights[k]),
                            tuple(boxes[k].tolist()), pixels[k], bool(flips[k]), dct)
            except DecodeError as exc:
                raise DecodeError(f"sample {idx.key[p]} in {idx.shard_urls[idx.shard[p]]} "
                                  f"at byte {idx.offset[p]}: {exc}") from exc
        if self.layout == "chw":
            images = images.permute(0, 3, 1, 2)
        out: tuple = (images, torch.from_numpy(idx.label[pos].astype(np.int64)))
        if self.with_ids:
            out += (torch.from_numpy(pos.astype(np.int64)),)
        if self.with_keys:
            out += (idx.key[pos].tolist(),)
        return out

    def _check(self, pos: np.ndarray, blobs: list[memoryview]) -> None:
        for p, blob in zip(pos.tolist(), blobs, strict=True):
            if hashlib.sha256(blob).hexdigest() != self.index.sha256[p]:
                raise IntegrityError(
                    f"sample {self.index.key[p]}: sha256 of bytes {self.index.offset[p]}+"
                    f"{self.index.size[p]} of {self.index.shard_urls[self.index.shard[p]]} "
                    "does not match index.parquet (shard changed or corrupt)")


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
    restored on all of them. ``persistent_workers=True`` is supported (the stream's
    position is in shared memory, read by the workers at every ``iter()``).
    """

    def __init__(self, stream: WdsStream, num_workers: int = 2, **kwargs: Any) -> None:
        refused = {"batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn",
                   "drop_last", "in_order"} & set(kwargs)
        if refused:
            raise ValueError(f"WdsLoader sets {sorted(refused)} itself: give batch_size / "
                             "drop_last to the stream (make_loader); order is the stream's")
        super().__init__(stream, batch_size=None, num_workers=num_workers, **kwargs)
        self.stream = stream
        self._seen = stream.start

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

    def __len__(self) -> int:
        """Batches the next ``iter()`` yields."""
        return self.stream.num_batches(0 if self._exhausted() else self._seen)

    def __iter__(self):
        if self._exhausted():
            self.stream.set_epoch(self.stream.epoch + 1)
            self._seen = 0
        self.stream.start = self._seen
        for batch in super().__iter__():
            self._seen += len(batch[1])
            yield batch

    def state_dict(self) -> dict:
        """Where this rank is: ``epoch``, ``samples_seen`` and ``seed``, plus what must
        match on resume (split, world_size, num_samples, remainder, order, window)."""
        s = self.stream
        return {"epoch": s.epoch, "samples_seen": self._seen, "seed": s.seed,
                "split": s.split, "world_size": s.world_size, "rank": s.rank,
                "num_samples": len(s.index), "samples_per_rank": s.samples_per_rank,
                "remainder": s.remainder, "order": s.order, "window": s.window,
                "batch_size": s.batch_size}

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


def make_loader(dataset: DatasetRef | str, split: str = "train", batch_size: int = 256, *,
                num_workers: int = 2, rank: int | None = None, world_size: int | None = None,
                seed: int = 0, epoch: int = 0, transform: BatchTransform | None = None,
                remainder: Remainder = "pad", drop_last: bool = False,
                order: Order = "global", window: int | None = None, with_keys: bool = False,
                layout: Layout = "hwc", verify: bool = False, with_ids: bool = False,
                persistent_workers: bool = True, **dataloader_kwargs: Any) -> WdsLoader:
    """A :class:`WdsLoader` over a new :class:`WdsStream` (arguments as there).

    ``num_workers`` decoding processes per rank, kept across epochs unless
    ``persistent_workers=False``; other keyword arguments (``pin_memory``,
    ``prefetch_factor``, ``multiprocessing_context``, ``timeout``, ``worker_init_fn``) go
    to ``torch.utils.data.DataLoader``.
    """
    stream = WdsStream(dataset, split, batch_size, rank=rank, world_size=world_size, seed=seed,
                       epoch=epoch, transform=transform, remainder=remainder,
                       drop_last=drop_last, order=order, window=window, with_keys=with_keys,
                       layout=layout, verify=verify, with_ids=with_ids)
    return WdsLoader(stream, num_workers=num_workers,
                     persistent_workers=persistent_workers and num_workers > 0,
                     **dataloader_kwargs)
