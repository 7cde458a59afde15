"""A sample's other tar members (``KEY.cls``, ``KEY.json``), read by byte range.

The index locates only a sample's image member. Its siblings follow it in the tar
(:func:`shardforge.formats.wds.sample_members` writes image, ``.cls``, ``.json`` in that
order): each a 512-byte USTAR header, then the data padded to 512 bytes. So they are found
by reading from the end of the image data, rounded up to a block, header by header, without
reading the rest of the tar: one range read of :data:`CHUNK` bytes in the common case.
"""

from __future__ import annotations

import json
import tarfile

import numpy as np

from shardforge.layout.reader import RangeReader, ShardReadError

BLOCK = 512
#: Bytes read after the image in one go: the headers and data of small ``.cls``/``.json``.
CHUNK = 4096
#: Most sibling members looked at (a sample has two).
MAX_MEMBERS = 4


def _ceil_block(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def read_siblings(reader: RangeReader, shard: int, offset: int, size: int, key: str,
                  tar_size: int) -> dict[str, bytes]:
    """``{extension: data}`` of the members named ``KEY.EXT`` that follow the image member
    at ``offset``/``size`` of tar ``shard`` (``tar_size`` bytes long) in ``reader``.

    Stops at the end of the archive, at a member of another key or after
    :data:`MAX_MEMBERS`. Raises :class:`~shardforge.layout.reader.ShardReadError` when a
    header is damaged (naming the tar and the fix)."""
    pos = _ceil_block(offset + size)
    found: dict[str, bytes] = {}
    buf, buf_at = b"", pos
    url = reader.shard_urls[shard]

    def read(at: int, length: int) -> bytes:
        nonlocal buf, buf_at
        if at < buf_at or at + length > buf_at + len(buf):
            length_read = max(length, min(CHUNK, tar_size - at))
            (view,) = reader.read(np.array([shard]), np.array([at]), np.array([length_read]))
            buf, buf_at = bytes(view), at
        return buf[at - buf_at:at - buf_at + length]

    for _ in range(MAX_MEMBERS):
        if pos + BLOCK > tar_size:
            break
        header = read(pos, BLOCK)
        if header == b"\0" * BLOCK:
            break
        try:
            info = tarfile.TarInfo.frombuf(header, tarfile.ENCODING, "surrogateescape")
        except tarfile.TarError as exc:
            raise ShardReadError(f"shard {url}: the tar header at byte {pos} after sample "
                                 f"{key!r} is damaged ({exc}); re-stage the tar from a good "
                                 "copy or rebuild the dataset") from exc
        stem, _, ext = info.name.partition(".")
        if stem != key:
            break
        data_at = pos + BLOCK
        found[ext] = read(data_at, info.size) if info.size else b""
        pos = data_at + _ceil_block(info.size)
    return found


def sample_meta(siblings: dict[str, bytes]) -> dict:
    """The sample's ``.json`` member parsed (``{}`` when absent); ValueError naming the
    problem when it is not a JSON object."""
    raw = siblings.get("json")
    if raw is None:
        return {}
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"the sample's .json member is a {type(data).__name__}, not an "
                         "object; rebuild the dataset")
    return data
