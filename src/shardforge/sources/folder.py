"""Class-folder trees (ImageNet / torchvision ``ImageFolder`` layout), local or s3://.

``ROOT/SPLIT/CLASS/FILE`` when ROOT has split folders (train, val, test), otherwise
``ROOT/CLASS/FILE`` as one split. Class index = position of the class folder name in the
sorted list of class folders (ImageFolder's rule; empty class folders keep their index).
Every regular file inside a class folder is a candidate: files that are not images are
rejected later, with a reason, never silently skipped. Hidden files (``.name``) are skipped.
"""

from __future__ import annotations

import posixpath
import random
from collections.abc import Iterator

import pyarrow.fs as pafs

from shardforge.sources.base import (
    SPLIT_NAMES,
    RawSample,
    Reject,
    ShardSpec,
    SourceOptions,
    SourcePlan,
    chunk,
    make_key,
    shard_size_for,
)
from shardforge.storage import resolve

KIND = "folder"


def plan(url: str, options: SourceOptions) -> SourcePlan:
    """List a class-folder tree and cut each split into shards (``shard_size_for``)."""
    root = resolve(url)
    infos = root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True))
    dirs, files = [], []
    for info in infos:
        rel = posixpath.relpath(info.path, root.path)
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        (dirs if info.type == pafs.FileType.Directory else files).append(rel)
    top = {d for d in dirs if "/" not in d}
    split_dirs = sorted(top & set(SPLIT_NAMES))
    rejects: list[Reject] = []
    by_split: dict[str, list[tuple[str, str]]] = {}   # split -> [(relpath, class_name)]
    classes: set[str] = set()
    depth = 2 if split_dirs else 1
    for d in dirs:
        parts = d.split("/")
        if len(parts) == depth and (not split_dirs or parts[0] in split_dirs):
            classes.add(parts[-1])
    for rel in sorted(files):
        parts = rel.split("/")
        if split_dirs and parts[0] not in split_dirs:
            continue
        split = parts[0] if split_dirs else options.default_split
        split = "val" if split == "validation" else split
        if len(parts) != depth + 1:
            rejects.append(Reject(rel, "not directly inside a class folder", split))
            continue
        by_split.setdefault(split, []).append((rel, parts[-2]))
    class_list = sorted(classes)
    index = {c: i for i, c in enumerate(class_list)}
    shards = []
    for split in sorted(by_split):
        items = [(rel, index[cls]) for rel, cls in by_split[split]]
        if options.seed is not None:
            random.Random(f"{options.seed}:{split}").shuffle(items)
        size = shard_size_for(options, len(items))
        for i, group in enumerate(chunk(items, size)):
            shards.append(ShardSpec(KIND, url, split, i, tuple(group)))
    if not shards:
        raise ValueError(f"source {url!r} has no files in class folders; expected "
                         "ROOT/CLASS/IMAGE or ROOT/{train,val}/CLASS/IMAGE")
    return SourcePlan(KIND, url, class_list, shards, rejects)


def read(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """Read every file of a shard spec; unreadable files become :class:`Reject`."""
    root = resolve(spec.source)
    for rel, label in spec.items:
        try:
            data = root.join(rel).read_bytes()
        except OSError as exc:
            yield Reject(rel, f"unreadable: {exc}", spec.split)
            continue
        yield RawSample(make_key(rel), label, rel, data)
