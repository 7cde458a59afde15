"""WebDataset tar shards, byte-reproducible.

A shard is a plain POSIX tar. Each sample is three members sharing its key:
``KEY.jpg`` (or ``KEY.png`` for raw-mode samples: lossless, decodable by every
WebDataset decoder), ``KEY.cls`` (the label as ASCII digits) and ``KEY.json``
(key, label, class name, source path, original and stored size). Keys contain no
dots, so WebDataset's "key = text before the first dot" rule holds.

We write the tar with the standard library's ``tarfile`` rather than
``webdataset.TarWriter`` because we need fixed member metadata (mtime 0, uid/gid 0,
no user names) for byte-identical reruns, and the data offset of each member for the
index; both are one-line settings here.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TarMember:
    """Where a member's data sits inside a tar (for range reads and the index)."""

    name: str
    offset: int
    size: int


def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG of an RGB uint8 array (OpenCV, compression level 1: fast)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                           [int(cv2.IMWRITE_PNG_COMPRESSION), 1])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def sample_members(key: str, image: bytes, image_ext: str, label: int,
                   meta: dict) -> list[tuple[str, bytes]]:
    """The (name, bytes) members of one sample, in a fixed order."""
    if "." in key or "/" in key:
        raise ValueError(f"sample key {key!r} contains '.' or '/'; keys must be dot-free")
    meta_json = json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return [(f"{key}.{image_ext}", image), (f"{key}.cls", str(int(label)).encode("ascii")),
            (f"{key}.json", meta_json)]


def write_tar(members: Iterable[tuple[str, bytes]]) -> tuple[bytes, list[TarMember]]:
    """Build a tar in memory from (name, bytes) pairs; return its bytes and member offsets."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o444
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return raw, list_members(raw)


def list_members(tar_bytes: bytes) -> list[TarMember]:
    """Member names with the offset and size of their data, in tar order."""
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        return [TarMember(m.name, m.offset_data, m.size) for m in tar.getmembers() if m.isfile()]
