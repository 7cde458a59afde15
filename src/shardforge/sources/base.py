"""What every source yields: deterministic shard specs and, per spec, raw samples."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from shardforge.names import check_name
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
    wds: (tar_relpath,); parquet: (relpath, start_row, stop_row).
    """

    kind: str
    source: str
    split: str
    index: int
    items: tuple

    def __post_init__(self) -> None:
        check_name(self.split, "split", f"shard spec {self.kind}:{self.source}",
                   "split names become file names; use letters, digits, '_' or '-'")

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}"


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


def list_inputs(url: str, suffix: str) -> tuple[Location, list[str]]:
    """``(root, files)``: the one file ``url`` names, or every ``*suffix`` file below it.

    ``root`` is the directory the files' relative paths are taken from. Raises ValueError
    naming the URL when there is no such file.
    """
    root = resolve(url)
    if root.path.endswith(suffix) and root.size() is not None:
        return root.parent(), [root.path]
    files = [p for p in root.list_files() if p.endswith(suffix)]
    if not files:
        raise ValueError(f"source {url!r} holds no {suffix} files; give one {suffix} file "
                         f"or a directory of them")
    return root, files


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
