"""Sample images and metadata for the pages, read from the shards by byte range and cached
in memory; a placeholder image (with the reason) when a sample cannot be read.

Each read opens its own :class:`~shardforge.layout.reader.RangeReader` (the server answers
requests on several threads; a reader is not shared between them) and closes it. Thumbnails
are cached with :func:`functools.lru_cache` on ``(dataset location, split, key, size)``
(decoded pixels and metadata likewise, in smaller caches); failures are not cached, so a restored shard shows on the next request.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from shardforge.formats.decode import DecodeError
from shardforge.layout.dataset import SplitIndex
from shardforge.layout.members import read_siblings, sample_meta
from shardforge.layout.reader import RangeReader, ShardReadError
from shardforge.layout.sample_grid import thumbnail
from shardforge.storage import resolve
from shardforge.view.datasets import images_of, position_of

#: Thumbnail sides the image route accepts (px); 0 means the stored bytes as they are.
MIN_THUMB, MAX_THUMB = 16, 512
#: Faults that make a sample unreadable: a placeholder and this text instead of a 500.
READ_FAULTS = (ShardReadError, DecodeError, OSError, ValueError)


@dataclass(frozen=True)
class Encoded:
    """An image ready to send: its bytes and MIME type."""

    data: bytes
    mime: str


def read_blob(index: SplitIndex, position: int) -> bytes:
    """The stored image bytes of sample ``position`` of ``index`` (one byte-range read).
    Raises :class:`~shardforge.layout.reader.ShardReadError` naming the tar and the fix
    when its shard is missing or truncated."""
    reader = RangeReader(index.shard_urls)
    try:
        (blob,) = reader.read(index.shard[[position]], index.offset[[position]],
                              index.size[[position]])
        return bytes(blob)
    finally:
        reader.close()


def _position(out: str, split: str, key: str) -> tuple[SplitIndex, int]:
    ds = images_of(out)
    if split not in ds.splits:
        raise ValueError(f"{ds.name} has no split {split!r}")
    position = position_of(out, split, key)
    if position is None:
        raise ValueError(f"{ds.name} has no sample {key!r} in its {split} split")
    return ds.splits[split], position


def sample_image(out: str, split: str, key: str, size: int = 0) -> Encoded:
    """Sample ``key`` of ``split`` of the dataset at ``out``: its stored bytes (``size``
    0; JPEG or PNG as stored; one range read, not cached: they can be large) or a JPEG
    thumbnail fitting ``size`` x ``size`` px (cached, :func:`thumbnail_image`). Raises
    one of :data:`READ_FAULTS` (a message naming the problem) when it cannot be read."""
    if size:
        return thumbnail_image(out, split, key, size)
    index, p = _position(out, split, key)
    return Encoded(read_blob(index, p), "image/png" if index.is_png[p] else "image/jpeg")


@lru_cache(maxsize=4096)
def thumbnail_image(out: str, split: str, key: str, size: int) -> Encoded:
    """The JPEG thumbnail (fitting ``size`` x ``size`` px, aspect kept) of a sample, cached
    on ``(out, split, key, size)``; raises one of :data:`READ_FAULTS` when it cannot be
    read."""
    index, p = _position(out, split, key)
    img = thumbnail(read_blob(index, p), bool(index.is_png[p]), size)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=88)
    return Encoded(buf.getvalue(), "image/jpeg")


@lru_cache(maxsize=64)
def sample_pixels(out: str, split: str, key: str) -> np.ndarray:
    """The decoded RGB pixels (H x W x 3 uint8, read-only) of a sample; raises one of
    :data:`READ_FAULTS` when it cannot be read."""
    from shardforge.formats.decode import decode_full

    index, p = _position(out, split, key)
    pixels = decode_full(read_blob(index, p), bool(index.is_png[p]))
    pixels.setflags(write=False)
    return pixels


@lru_cache(maxsize=1024)
def sample_siblings(out: str, split: str, key: str) -> dict[str, bytes]:
    """The sample's ``.cls`` / ``.json`` members (:func:`shardforge.layout.members.
    read_siblings`); raises one of :data:`READ_FAULTS` when they cannot be read."""
    index, p = _position(out, split, key)
    shard = int(index.shard[p])
    size = resolve(index.shard_urls[shard]).size()
    if size is None:
        raise ShardReadError(f"shard {index.shard_urls[shard]} is missing")
    reader = RangeReader(index.shard_urls)
    try:
        return read_siblings(reader, shard, int(index.offset[p]), int(index.size[p]), key,
                             size)
    finally:
        reader.close()


def sample_metadata(out: str, split: str, key: str) -> tuple[dict, str | None]:
    """``(the sample's .json member, None)``, or ``({}, reason)`` when it cannot be read."""
    try:
        return sample_meta(sample_siblings(out, split, key)), None
    except READ_FAULTS as exc:
        return {}, _reason(exc)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def image_or_placeholder(out: str, split: str, key: str, size: int) -> tuple[Encoded, str | None]:
    """``(image, None)``, or ``(placeholder PNG, reason)`` when the sample cannot be read
    (missing or truncated shard, undecodable bytes): never raises for those."""
    try:
        return sample_image(out, split, key, size), None
    except READ_FAULTS as exc:
        reason = _reason(exc)
        return placeholder(size or 128, reason), reason


def placeholder(side: int, reason: str) -> Encoded:
    """A grey ``side`` px PNG with a red cross and the start of ``reason`` (paths shortened
    to their file names): what a page shows where a sample could not be read (the page
    prints the full reason)."""
    side = max(MIN_THUMB, min(side, MAX_THUMB))
    reason = re.sub(r"\S*/([^\s/]+)", r"\1", reason)
    img = Image.new("RGB", (side, side), (225, 225, 225))
    draw = ImageDraw.Draw(img)
    draw.line((0, 0, side - 1, side - 1), fill=(200, 60, 60), width=2)
    draw.line((0, side - 1, side - 1, 0), fill=(200, 60, 60), width=2)
    chars = max(4, side // 7)
    for row, start in enumerate(range(0, min(len(reason), chars * 4), chars)):
        draw.text((3, 3 + 11 * row), reason[start:start + chars], fill=(40, 40, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return Encoded(buf.getvalue(), "image/png")


def shard_problems(index: SplitIndex, positions: np.ndarray) -> dict[int, str]:
    """``{shard number: problem}`` for the shards holding ``positions`` that are missing
    (a metadata request each): what a grid page prints above its placeholders."""
    problems = {}
    for shard in sorted({int(s) for s in index.shard[positions]}):
        url = index.shard_urls[shard]
        try:
            if resolve(url).size() is None:
                problems[shard] = f"shard {url} is missing"
        except OSError as exc:
            problems[shard] = f"shard {url}: {exc}"
    return problems
