"""What every source yields: deterministic shard specs and, per spec, raw samples.

Source stamps (content-aware resume). Every spec carries a ``stamp``: a digest of what
the listing says about each input file the spec reads, ``size:mtime_ns`` plus ``:inode``
for local files (object stores: size and the listing's LastModified, no extra request).
It is part of the spec, so ``ShardJob.spec_hash`` changes when an input file changes and
a rerun rebuilds exactly the shards that read it. This is a fast check, not a content
hash: a rewrite that keeps the size, the mtime (to the nanosecond locally, to the second
on S3) and, locally, the inode is not noticed (``touch -r``-style restores, or an S3
overwrite of the same size within the same second). Parent datasets (``sources/dataset``)
use the parent's recorded sha256 of each tar instead, which is exact.

Local reads (:func:`open_local_regular`) open with ``O_NONBLOCK`` and check with
``fstat`` that the file is still a regular file, so a path replaced by a FIFO or a device
after planning is rejected instead of blocking forever. (A regular file on a hung
network mount can still block a read in the kernel: no user-space timeout covers that;
Ray's task retry does not either.) Object-store reads time out through the S3
filesystem's connect/request timeouts (``storage.S3_CONNECT_TIMEOUT_S``, 10 s;
``storage.S3_REQUEST_TIMEOUT_S``, 60 s).

Keys: a reader derives each key from an origin that names its file (folder: the
relative path; wds: ``TAR#KEY``; parquet: ``FILE#ROW`` or ``FILE#VALUE``), and
:func:`make_key` keeps distinct origins distinct unless both the 80-character slug and
40 bits of SHA-1 coincide; so repeats can only come from inside one container (a key
twice in one tar, a key-column value twice in one parquet file) or from a parent
dataset's index, and those readers reject the second occurrence.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import pyarrow.fs as pafs

from shardforge.names import check_name
from shardforge.sources.items import PackedItems
from shardforge.sources.localfs import (  # noqa: F401  (re-exported for the readers)
    NotRegularFile,
    file_type,
    open_local_regular,
    stat_stamp,
    walk_local,
)
from shardforge.storage import Location, resolve

SPLIT_NAMES = ("train", "val", "validation", "test")
KEY_SLUG_CHARS = 80


@dataclass(frozen=True)
class RawSample:
    """One source sample before processing: encoded image bytes and its label."""

    key: str
    label: int
    origin: str     # where it came from, for people: a relative path, TAR#member, FILE#row
    data: bytes


@dataclass(frozen=True)
class Reject:
    """A source item that did not become a sample, with the reason."""

    origin: str
    reason: str
    split: str = ""


@dataclass(frozen=True)
class ShardSpec:
    """One output shard's worth of input, fully determined before any work starts.

    ``kind`` names the source reader, ``source`` the source root URL, and ``items`` what
    that reader needs, with paths relative to the root: folder: ((relpath, label), ...);
    wds: (tar_relpath,); parquet: (relpath, start_row, stop_row). Sources that list one
    item per sample (folder, imagenet val, dataset) give a :class:`PackedItems` of those
    tuples (compact in the driver; iterated the same way).

    ``stamp``: a digest of the listing's size/mtime(/inode) of the input files this spec
    reads (see the module docstring), so the spec (and its hash) changes when they do.
    ``skip``: positions the reader must not yield because planning rejected them (parquet:
    absolute row numbers holding a duplicate key); their rejects are in the plan.
    """

    kind: str
    source: str
    split: str
    index: int
    items: tuple | PackedItems
    stamp: str = ""
    skip: tuple = ()

    def __post_init__(self) -> None:
        check_name(self.split, "split", f"shard spec {self.kind}:{self.source}",
                   "split names become file names; use letters, digits, '_' or '-'")

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}"

    def plain(self) -> dict:
        """The fields as JSON-ready values, what spec hashes digest: packed items as the
        list of their tuples, so a spec hashes the same with packed or tuple items."""
        fields = asdict(self)
        if isinstance(self.items, PackedItems):
            fields["items"] = list(self.items)
        return fields


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source. Column names apply to parquet sources only."""

    default_split: str = "train"
    shard_size: int | None = None   # None: auto_shard_size(samples in the split)
    seed: int | None = 0            # folder sources: shuffle before chunking (None: keep order)
    image_column: str = "image"
    label_column: str = "label"
    key_column: str | None = None

    def __post_init__(self) -> None:
        check_name(self.default_split, "split", "--split (or a card's split parameter)",
                   "name the split e.g. train or val (it becomes part of output file names)")


@dataclass
class SourcePlan:
    """A source listed and partitioned: class names, shard specs, and what was rejected."""

    kind: str
    url: str
    classes: list[str]
    shards: list[ShardSpec]
    rejects: list[Reject] = field(default_factory=list)

    def splits(self) -> list[str]:
        return sorted({s.split for s in self.shards})


def list_inputs(url: str, suffix: str) -> tuple[Location, list[str], dict[str, str],
                                                list[tuple[str, str]]]:
    """``(root, files, stamps, refused)``: the one file ``url`` names, or every ``*suffix``
    file below it, with each file's stamp (:func:`info_stamp`) from the listing, and the
    ``*suffix`` entries of a local tree that are not read, ``(relpath, reason)``
    (:func:`~shardforge.sources.localfs.walk_local`: FIFOs, links out of the tree, loops).

    ``root`` is the directory the files' relative paths are taken from. Raises ValueError
    naming the URL when there is no such file.
    """
    root = resolve(url)
    if root.path.endswith(suffix):
        info = root.fs.get_file_info(root.path)
        if info.type == pafs.FileType.File:
            return (root.parent(), [root.path], {root.path: info_stamp(info, root.is_local)},
                    [])
    refused: list[tuple[str, str]] = []
    if root.is_local and os.path.isdir(root.path):
        _dirs, found, refused = walk_local(root.path)
        stamps = {posixpath.join(root.path, rel): s for rel, s in found.items()
                  if rel.endswith(suffix)}
        refused = [(rel, why) for rel, why in refused if rel.endswith(suffix)]
    else:
        selector = pafs.FileSelector(root.path, recursive=True, allow_not_found=True)
        stamps = {i.path: info_stamp(i, root.is_local) for i in root.fs.get_file_info(selector)
                  if i.type == pafs.FileType.File and i.path.endswith(suffix)}
    if not stamps:
        raise ValueError(f"source {url!r} holds no {suffix} files; give one {suffix} file "
                         f"or a directory of them")
    return root, sorted(stamps), stamps, refused


def info_stamp(info: pafs.FileInfo, local: bool) -> str:
    """``size:mtime_ns`` of a listed file, plus ``:inode`` on a local disk (one stat)."""
    if local:
        try:
            return stat_stamp(os.stat(info.path))
        except OSError:
            pass
    return f"{info.size}:{info.mtime_ns}"


def combine_stamps(stamps: Iterable[str]) -> str:
    """One short digest of several file stamps, in the given order."""
    return hashlib.sha256("\n".join(stamps).encode()).hexdigest()[:32]


def open_input(loc: Location, seekable: bool = False):
    """A readable file for a source file: :func:`open_local_regular` on a local disk, the
    filesystem's stream (or random-access file when ``seekable``) on an object store.
    A local symlink is resolved first (the final open refuses to follow one)."""
    if loc.is_local:
        return open_local_regular(os.path.realpath(loc.path))
    return loc.fs.open_input_file(loc.path) if seekable else loc.fs.open_input_stream(loc.path)


def make_key(origin: str) -> str:
    """A stable, dot-free, slash-free sample key derived from the origin path.

    Readable prefix (non-alphanumerics -> ``_``, cut at 80 chars) plus 10 hex digits of
    the SHA-1 of the full origin, so distinct paths never collide after slugging.
    """
    stem = origin.rsplit(".", 1)[0] if "." in origin.rsplit("/", 1)[-1] else origin
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:KEY_SLUG_CHARS] or "sample"
    digest = hashlib.sha1(origin.encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}"


def split_from_name(name: str, default: str) -> str:
    """The split named by a path component or file-name token, else ``default``."""
    tokens = re.split(r"[/\\_.\-]+", name.lower())
    for split in SPLIT_NAMES:
        if split in tokens:
            return "val" if split == "validation" else split
    return default


MAX_AUTO_SHARD = 1000
MIN_AUTO_SHARD = 64
AUTO_SHARDS = 32


def auto_shard_size(num_samples: int) -> int:
    """Samples per shard when none is given: about 32 shards per split, 64..1000 samples each.

    A function of the split's size only, never of the cluster, so the partition (and the
    bytes) stay the same on any number of workers. 1000 (ImageNet scale) alone would give
    a 3,000-image split 3 shards, idling most workers (bench/ingest.py: 0.67x vs 1.08x).
    """
    return max(MIN_AUTO_SHARD, min(MAX_AUTO_SHARD, -(-num_samples // AUTO_SHARDS)))


def shard_size_for(options: SourceOptions, num_samples: int) -> int:
    """``options.shard_size`` when set, else :func:`auto_shard_size`."""
    return options.shard_size if options.shard_size is not None else auto_shard_size(num_samples)


def chunk(items: list, size: int) -> list[list]:
    """Consecutive chunks of at most ``size`` items."""
    if size < 1:
        raise ValueError(f"shard size {size} must be >= 1")
    return [items[i:i + size] for i in range(0, len(items), size)]
