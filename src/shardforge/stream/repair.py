"""Corrupt samples inside a batch of :class:`~shardforge.stream.wds_stream.WdsStream`:
detect (sha256, decode), then raise (``strict``) or replace (``skip``) by the rule of
:mod:`shardforge.stream.faults`. A mixin: the stream provides ``index``, ``dataset``,
``verify``, ``on_corrupt``, ``transform``, ``rank``, ``split``, ``_faults`` and ``_ctx``.
"""

from __future__ import annotations

import hashlib
import posixpath

import cv2
import numpy as np

from shardforge.formats.decode import DecodeError, decode_crop
from shardforge.layout.dataset import DatasetRef, SplitIndex
from shardforge.layout.reader import RangeReader
from shardforge.stream.faults import (
    CHECKSUM,
    CorruptSampleError,
    fix,
    next_good,
    strict_message,
)
from shardforge.stream.partition import epoch_rng

SPARE_SALT = 0x5BA_4E00   # crops of replacement samples taken from outside the batch


class IntegrityError(CorruptSampleError):
    """A sample's bytes do not match the sha256 recorded in the index (``strict``)."""


def recorded_sizes(dataset: DatasetRef, index: SplitIndex) -> list[int | None]:
    """Each tar's size as ``summary.json`` records it (``formats.wds``), None if unknown."""
    recorded: dict[str, int] = {}
    wds = dataset.summary.get("formats", {}).get("wds", {}) if dataset.summary else {}
    for records in (wds.values() if isinstance(wds, dict) else ()):
        for rec in records if isinstance(records, list) else ():
            if isinstance(rec, dict) and isinstance(rec.get("size"), int):
                recorded[posixpath.basename(str(rec.get("path", "")))] = rec["size"]
    return [recorded.get(posixpath.basename(url.split("?", 1)[0])) for url in index.shard_urls]


class SampleRepair:
    """The stream's corrupt-sample handling (see the module doc)."""

    def _hash_ok(self, p: int, blob: memoryview) -> bool:
        return hashlib.sha256(blob).hexdigest().encode() == self.index.sha256[p]

    def _corrupt(self, p: int, code: int, reason: str) -> int:
        """Record sample ``p`` as corrupt (``strict``: raise instead); returns ``code``."""
        idx = self.index
        if self.on_corrupt == "strict":
            error = IntegrityError if code == CHECKSUM else CorruptSampleError
            raise error(strict_message(idx.key[p], idx.shard_urls[idx.shard[p]],
                                       int(idx.offset[p]), int(idx.size[p]), reason,
                                       self.dataset.name))
        self._faults.append((int(p), code))
        return code

    def _replace(self, reader: RangeReader, pos: np.ndarray, bad: list[int],
                 pixels: np.ndarray) -> np.ndarray:
        """Fill each bad slot by the rule of :mod:`shardforge.stream.faults`; returns the
        positions now in the batch (whose labels, ids and keys go with the pixels)."""
        flags = [b != 0 for b in bad]
        used = pos.copy()
        for k in np.flatnonzero(flags).tolist():
            j = next_good(flags, k)
            if j is None:
                used[k] = self._spare(reader, k, pixels[k])
            else:
                pixels[k] = pixels[j]
                used[k] = pos[j]
        return used

    def _spare(self, reader: RangeReader, k: int, out: np.ndarray) -> int:
        """Decode into ``out`` the first good sample after the batch in the rank's epoch
        order (cyclically): slot ``k``'s replacement when the whole batch is corrupt."""
        seed, epoch, everything, lo, hi = self._ctx
        idx, n = self.index, len(everything)
        for step in range(n):
            p = int(everything[(hi + step) % n])
            (blob,) = reader.read(idx.shard[[p]], idx.offset[[p]], idx.size[[p]])
            if self.verify and not self._hash_ok(p, blob):
                continue
            rng = epoch_rng(seed, epoch, self.rank, lo + k, SPARE_SALT)
            boxes, flips = self.transform.plan(idx.width[[p]], idx.height[[p]], rng)
            try:
                decode_crop(blob, bool(idx.is_png[p]), int(idx.width[p]), int(idx.height[p]),
                            tuple(boxes[0].tolist()), out, bool(flips[0]), self.transform.dct)
            except (DecodeError, cv2.error):
                continue
            return p
        raise CorruptSampleError(f"no sample of rank {self.rank}'s epoch {epoch} of split "
                                 f"{self.split!r} is readable: every one is corrupt; "
                                 f"{fix(self.dataset.name)}")
