"""Class-folder trees (ImageNet / torchvision ``ImageFolder`` layout), local or s3://.

``ROOT/SPLIT/CLASS/FILE`` when ROOT has split folders (train, val, test), otherwise
``ROOT/CLASS/FILE`` as one split. Class index = position of the class folder name in the
sorted list of class folders (ImageFolder's rule; empty class folders keep their index).
Every regular file inside a class folder is a candidate: files that are not images are
rejected later, with a reason, never silently skipped. Hidden files (``.name``) are skipped.

What is read on a local disk (listed by :func:`walk_local`, not by pyarrow): regular files
only; FIFOs, sockets and devices are rejected by type (a FIFO would block the read
forever). Symlinks are followed only when their target lies inside the source root; a
link to outside the root, a broken link and a folder reached a second time (a symlink
loop, or two links to one folder) are rejected with the reason. pyarrow's recursive
``FileSelector`` cannot be used locally (see ``sources.localfs``). Object stores have no
symlinks or special files, so they keep pyarrow's listing (one LIST per 1,000 keys, no
per-file request).

Each spec's ``stamp`` digests its files' ``size:mtime_ns:inode`` (object stores:
``size:mtime``), so a changed image rebuilds its shard on a rerun (see ``sources.base``).
"""

from __future__ import annotations

import os
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
    combine_stamps,
    make_key,
    shard_size_for,
)
from shardforge.sources.items import PackedItems
from shardforge.sources.localfs import inside, open_local_regular, walk_local
from shardforge.storage import Location, resolve

KIND = "folder"


def plan(url: str, options: SourceOptions) -> SourcePlan:
    """List a class-folder tree and cut each split into shards (``shard_size_for``)."""
    root = resolve(url)
    if root.is_local:
        dirs, stamps, refused = walk_local(root.path)
    else:
        dirs, stamps, refused = _list_store(root)
    top = {d for d in dirs if "/" not in d}
    split_dirs = sorted(top & set(SPLIT_NAMES))
    rejects: list[Reject] = []
    depth = 2 if split_dirs else 1
    class_list = sorted({d.rsplit("/", 1)[-1] for d in dirs if d.count("/") == depth - 1
                         and (not split_dirs or d.split("/", 1)[0] in split_dirs)})
    index = {c: i for i, c in enumerate(class_list)}
    del dirs
    for rel, reason in refused:
        split = _split_of(rel, split_dirs, options)
        if split is not None:
            rejects.append(Reject(rel, reason, split))
    # split -> ([relpath], [label]): two lists, not a tuple per file (56 B a file less)
    by_split: dict[str, tuple[list[str], list[int]]] = {}
    for rel in sorted(stamps):
        split = _split_of(rel, split_dirs, options)
        if split is None:
            continue
        parts = rel.split("/")
        if len(parts) != depth + 1:
            rejects.append(Reject(rel, "not directly inside a class folder", split))
            continue
        rels, labels = by_split.setdefault(split, ([], []))
        rels.append(rel)
        labels.append(index[parts[-2]])
    shards = []
    for split in sorted(by_split):
        rels, labels = by_split.pop(split)
        if options.seed is not None:
            # One permutation for both lists: shuffle() depends only on the length and
            # the generator, so this is the order of shuffling the (relpath, label) pairs.
            random.Random(f"{options.seed}:{split}").shuffle(rels)
            random.Random(f"{options.seed}:{split}").shuffle(labels)
        size = shard_size_for(options, len(rels))
        for i, (group, group_labels) in enumerate(zip(chunk(rels, size), chunk(labels, size),
                                                      strict=True)):
            stamp = combine_stamps(stamps.pop(rel) for rel in group)
            items = PackedItems(zip(group, group_labels, strict=True))
            shards.append(ShardSpec(KIND, url, split, i, items, stamp))
        del rels, labels        # the split's paths now live only in its packed specs
    if not shards:
        raise ValueError(f"source {url!r} has no files in class folders; expected "
                         "ROOT/CLASS/IMAGE or ROOT/{train,val}/CLASS/IMAGE")
    return SourcePlan(KIND, url, class_list, shards, rejects)


def _split_of(rel: str, split_dirs: list[str], options: SourceOptions) -> str | None:
    """The split a relative path belongs to; None when it lies outside every split folder."""
    first = rel.split("/", 1)[0]
    if split_dirs and first not in split_dirs:
        return None
    split = first if split_dirs else options.default_split
    return "val" if split == "validation" else split


def _list_store(root: Location) -> tuple[list[str], dict[str, str], list[tuple[str, str]]]:
    """An object store's listing: (dirs, {file: size:mtime stamp}, []) (no symlinks there)."""
    infos = root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True))
    dirs, stamps = [], {}
    for info in infos:
        rel = posixpath.relpath(info.path, root.path)
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if info.type == pafs.FileType.Directory:
            dirs.append(rel)
        else:
            stamps[rel] = f"{info.size}:{info.mtime_ns}"
    return dirs, stamps, []


def read(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """Read every file of a shard spec; unreadable files become :class:`Reject`.

    Locally, a file is read only while it is (still) a regular file whose real path lies
    inside the source root (:func:`open_local_regular`).
    """
    root = resolve(spec.source)
    real_root = os.path.realpath(root.path) if root.is_local else ""
    for rel, label in spec.items:
        try:
            data = _read_file(root, rel, real_root)
        except OSError as exc:
            yield Reject(rel, f"unreadable: {exc}", spec.split)
            continue
        yield RawSample(make_key(rel), label, rel, data)


def _read_file(root: Location, rel: str, real_root: str) -> bytes:
    if not root.is_local:
        return root.join(rel).read_bytes()
    real = os.path.realpath(os.path.join(root.path, rel))
    if not inside(real, real_root):
        raise OSError(f"now resolves to {real}, outside the source root {real_root}")
    with open_local_regular(real) as f:
        return f.read()
