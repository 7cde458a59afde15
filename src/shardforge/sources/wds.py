"""Existing WebDataset shards (``*.tar``), local or s3://, re-sharded one output per input.

Each input tar becomes one output shard (its samples in stored order), so planning needs
no scan of the data. A sample's image is its first member with an image extension; its
label is ``.cls`` / ``.label`` / ``.target`` (ASCII integer) or ``"label"`` in ``.json``.
The split is taken from the tar's path (``...-train-000.tar``, ``val/x.tar``) when it
names one, else ``--split``.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator

from shardforge.sources.base import (
    RawSample,
    Reject,
    ShardSpec,
    SourceOptions,
    SourcePlan,
    list_inputs,
    make_key,
    open_input,
    split_from_name,
)
from shardforge.storage import resolve

KIND = "wds"
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff", "gif")
LABEL_EXTS = ("cls", "label", "target", "cls2")


def plan(url: str, options: SourceOptions) -> SourcePlan:
    """One shard spec per input tar, numbered per split in sorted path order; each spec's
    stamp is its tar's listing stamp, so a changed tar rebuilds only its shard."""
    root, tars, stamps, refused = list_inputs(url, ".tar")
    per_split: dict[str, int] = {}
    shards = []
    for path in tars:
        rel = posixpath.relpath(path, root.path)
        split = split_from_name(rel, options.default_split)
        index = per_split.get(split, 0)
        per_split[split] = index + 1
        shards.append(ShardSpec(KIND, root.url, split, index, (rel,), stamps[path]))
    rejects = [Reject(rel, why, split_from_name(rel, options.default_split))
               for rel, why in refused]
    return SourcePlan(KIND, url, [], shards, rejects)


def read(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """Stream one tar, grouping members by key; samples without image or label are rejected.

    A damaged tar (truncated, a size field past the data, a corrupt header) yields every
    sample before the damage and one reject naming the member and byte offset where
    reading stopped. Members that are not regular files (symlinks, hard links, devices)
    are never read. A key seen before in the tar is rejected (the first one is kept).
    """
    (rel,) = spec.items
    loc = resolve(spec.source).join(rel)
    try:
        raw = open_input(loc)
    except OSError as exc:
        yield Reject(rel, f"unreadable tar: {exc}", spec.split)
        return
    with raw:
        yield from _TarReader(rel, spec.split).samples(_Tail(raw))


class _Tail:
    """A read-only stream that keeps its last bytes, so the block where ``tarfile``
    stopped can be checked: tarfile ends silently at an invalid header after offset 0."""

    KEEP = 4 * tarfile.RECORDSIZE

    def __init__(self, raw) -> None:
        self.raw, self.pos, self.tail = raw, 0, b""

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.pos += len(data)
        self.tail = (self.tail + data)[-self.KEEP:]
        return data

    def block(self, offset: int) -> bytes | None:
        """The bytes from ``offset`` read so far (None: no longer kept)."""
        start = self.pos - len(self.tail)
        return self.tail[offset - start:] if offset >= start else None


class _TarReader:
    """Groups one tar's members into samples (see :func:`read`)."""

    def __init__(self, rel: str, split: str) -> None:
        self.rel, self.split = rel, split
        self.seen: dict[str, str] = {}      # key -> where it first appeared
        self.key: str | None = None
        self.where = ""                     # the current group's first member, for people
        self.parts: dict[str, bytes] = {}
        self.notes: dict[str, str] = {}     # ext -> why a member was not read

    def samples(self, stream: _Tail) -> Iterator[RawSample | Reject]:
        member = None
        try:
            tar = tarfile.open(fileobj=stream, mode="r|")
            for member in tar:
                if member.isdir():
                    continue
                base = posixpath.basename(member.name)
                if "." not in base:
                    continue
                key = posixpath.join(posixpath.dirname(member.name), base.split(".", 1)[0])
                ext = base.split(".", 1)[1].lower()
                if key != self.key or ext in self.parts or ext in self.notes:
                    if self.key is not None:
                        yield self._close()
                    self.key, self.parts, self.notes = key, {}, {}
                    self.where = f"member {member.name!r} at byte {member.offset}"
                if not member.isfile():
                    self.notes[ext] = f"{base} is a {member_type(member)} member, not read"
                    continue
                f = tar.extractfile(member)
                self.parts[ext] = f.read() if f is not None else b""
            end = tar.offset
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            at = (f"member {member.name!r} (header at byte {member.offset})" if member is not None
                  else "its first header")
            origin = f"{self.rel}#{self.key}" if self.key is not None else self.rel
            yield Reject(origin, f"unreadable tar: damaged at {at}: {type(exc).__name__}: {exc}; this "
                         "sample and any after it in the file are lost", self.split)
            return
        if self.key is not None:
            yield self._close()
        rest = stream.block(end)
        if rest and rest[:tarfile.BLOCKSIZE].strip(b"\0"):
            yield Reject(f"{self.rel}@{end}", f"unreadable tar: invalid header at byte {end}; "
                         "any samples after it in the file are lost", self.split)

    def _close(self) -> RawSample | Reject:
        key, origin = self.key, f"{self.rel}#{self.key}"
        if key in self.seen:
            return Reject(origin, f"duplicate sample key {key!r} in {self.rel}: the first "
                          f"({self.seen[key]}) is kept; this one ({self.where}) is not",
                          self.split)
        self.seen[key] = self.where
        return _to_sample(key, self.parts, self.rel, self.split, self.notes)


def member_type(member: tarfile.TarInfo) -> str:
    """What a tar member that is not a regular file or directory is (for reject reasons)."""
    for test, name in ((member.issym, "symlink"), (member.islnk, "hard link"),
                       (member.ischr, "character device"), (member.isblk, "block device"),
                       (member.isfifo, "FIFO")):
        if test():
            return name
    return "special"


def _to_sample(key: str, parts: dict[str, bytes], rel: str, split: str,
               notes: dict[str, str] | None = None) -> RawSample | Reject:
    origin = f"{rel}#{key}"
    image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
    if image is None:
        why = f"; {'; '.join(notes.values())}" if notes else ""
        return Reject(origin, f"no image member (has: {sorted(parts)}){why}", split)
    label = _label(parts)
    if label is None:
        return Reject(origin, "no integer label in .cls/.label/.target or json 'label'", split)
    return RawSample(make_key(origin), label, origin, image)


def _label(parts: dict[str, bytes]) -> int | None:
    for ext in LABEL_EXTS:
        if ext in parts:
            try:
                return int(parts[ext].decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                return None
    if "json" in parts:
        try:
            value = json.loads(parts["json"]).get("label")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return None
