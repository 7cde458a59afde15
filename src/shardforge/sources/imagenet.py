"""ImageNet (ILSVRC2012) as downloaded: the train and val archives, read in place.

The source is a directory (local or s3://) holding ``ILSVRC2012_img_train.tar`` and/or
``ILSVRC2012_img_val.tar``, or one of those files (then only that split). Nothing is
extracted: planning reads the archives' tar headers (with seeks; the image data is never
read), and each shard reads its byte range of the archive.

* train: the archive holds one tar per class (``n01440764.tar`` holding
  ``n01440764_10026.JPEG`` ...). Each class tar becomes one output shard (the archive's
  own partition, like the ``wds`` source's one shard per tar; ``--shard-size`` does not
  apply), read as a stream from its byte range. Shards hold one class each: FFCV's
  loader and shardforge's WebDataset stream draw samples at random across shards, and
  the ``wids`` index lets other loaders do the same.
* val: a flat archive of ``ILSVRC2012_val_00000001.JPEG`` ...; labels come from
  ``ILSVRC2012_val_labels.csv`` or the devkit ``ILSVRC2012_devkit_t12.tar.gz`` beside it
  (:mod:`shardforge.sources.imagenet_labels`). Its images are cut into shards of
  ``--shard-size`` (default: about 32 shards) in stored order; each shard reads its run of
  images as one byte range.

Classes are the sorted WNIDs (torchvision's ``ImageNet``): those of the train archive's
class tars when it is there, else the labels file's (the devkit's 1,000 leaf synsets).

Rejects, by origin ``ARCHIVE#MEMBER`` (``ARCHIVE#CLASS.tar#IMAGE`` in train): a member
that is not a regular file or not a class ``.tar``, a val image without a label or with a
WNID that is not a class (at planning); a class tar that is not a tar or is damaged (at
reading: the images before the damage are kept). A missing labels file, an outer archive
that is not a tar, or a source with neither archive stops planning with a ValueError
naming the file and the fix. Each spec's stamp is its archive's (and labels file's)
listing stamp, so a replaced archive rebuilds its split.
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow.fs as pafs

from shardforge.sources.base import (
    RawSample,
    Reject,
    ShardSpec,
    SourceOptions,
    SourcePlan,
    chunk,
    combine_stamps,
    info_stamp,
    make_key,
    open_input,
    shard_size_for,
    split_from_name,
)
from shardforge.sources.imagenet_labels import DEVKIT, LABELS_CSV, find_labels, load_labels
from shardforge.sources.items import PackedItems
from shardforge.sources.ranges import block_after, window
from shardforge.sources.wds import member_type
from shardforge.storage import Location, resolve

KIND = "imagenet-archive"
ARCHIVES = {"train": "ILSVRC2012_img_train.tar", "val": "ILSVRC2012_img_val.tar"}
CLASS_TAR = "class-tar"     # an item that is one class's tar inside the train archive
IMAGE = "image"             # an item that is one image inside the val archive
SCAN_BUFFER = 1 << 20       # planning: read headers 1 MiB at a time (val images ~130 KB)
READ_ERRORS = (OSError, EOFError, ValueError, tarfile.TarError)


def detect(loc: Location) -> bool:
    """Whether ``loc`` is an ILSVRC2012 image archive or a directory holding one."""
    if posixpath.basename(loc.path) in ARCHIVES.values():
        return True
    return any(loc.join(name).exists() for name in ARCHIVES.values())


def plan(url: str, options: SourceOptions) -> SourcePlan:
    """Train: one spec per class tar, in sorted WNID order; val: runs of
    ``shard_size_for`` labelled images in stored order (see the module docstring)."""
    root, archives = _archives(url)
    shards: list[ShardSpec] = []
    rejects: list[Reject] = []
    classes: list[str] = []
    if "train" in archives:
        classes, train_shards = _plan_train(root, archives["train"], rejects)
        shards += train_shards
    if "val" in archives:
        val_shards, wnids = _plan_val(root, archives["val"], classes, options, rejects)
        classes = classes or wnids
        shards += val_shards
    if not shards:
        shown = "; ".join(f"{r.origin}: {r.reason}" for r in rejects[:3])
        raise ValueError(f"source {url!r}: no readable image in the ImageNet archives "
                         f"({shown or 'the archives are empty'})")
    return SourcePlan(KIND, url, classes, shards, rejects)


def _archives(url: str) -> tuple[Location, dict[str, str]]:
    """``(directory, {split: archive name})`` of the archives ``url`` names."""
    loc = resolve(url)
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.File:
        name = posixpath.basename(loc.path)
        split = split_from_name(name, "")
        if split not in ARCHIVES:
            raise ValueError(f"source {url!r}: cannot tell whether {name} holds the train or "
                             f"the val images; name it {ARCHIVES['train']} or "
                             f"{ARCHIVES['val']}, or give the directory holding them")
        return loc.parent(), {split: name}
    found = {split: name for split, name in ARCHIVES.items()
             if loc.fs.get_file_info(loc.join(name).path).type == pafs.FileType.File}
    if not found:
        raise ValueError(f"source {url!r} holds neither {ARCHIVES['train']} nor "
                         f"{ARCHIVES['val']}; give the directory of the ImageNet download "
                         "(or one of those files)")
    return loc, found


def _stamp(loc: Location) -> str:
    return info_stamp(loc.fs.get_file_info(loc.path), loc.is_local)


def _plan_train(root: Location, name: str,
                rejects: list[Reject]) -> tuple[list[str], list[ShardSpec]]:
    """The train archive's classes (sorted WNIDs) and one spec per class tar."""
    loc = root.join(name)
    members = _scan(loc, name, "train", rejects, buffer_size=tarfile.BLOCKSIZE)
    tars: dict[str, tarfile.TarInfo] = {}
    for m in members:
        origin = f"{name}#{m.name}"
        if m.isdir():
            continue
        if not m.isfile():
            rejects.append(Reject(origin, f"a {member_type(m)} member, not a class tar; "
                                  "not read", "train"))
        elif not m.name.endswith(".tar"):
            rejects.append(Reject(origin, f"not a class tar ({name} holds one WNID.tar per "
                                  "class, e.g. n01440764.tar); not read", "train"))
        elif _wnid(m.name) in tars:
            rejects.append(Reject(origin, f"a second {posixpath.basename(m.name)} in {name}: "
                                  f"the first (at byte {tars[_wnid(m.name)].offset}) is read; "
                                  "this one is not", "train"))
        else:
            tars[_wnid(m.name)] = m
    classes = sorted(tars)
    stamp = _stamp(loc)
    shards = [ShardSpec(KIND, root.url, "train", label,
                        ((CLASS_TAR, name, tars[w].name, tars[w].offset_data, tars[w].size,
                          label),), stamp)
              for label, w in enumerate(classes)]
    return classes, shards


def _plan_val(root: Location, name: str, classes: list[str], options: SourceOptions,
              rejects: list[Reject]) -> tuple[list[ShardSpec], list[str]]:
    """The val archive's specs, labelled by the labels file beside it, and the labels
    file's WNIDs. ``classes``: the train archive's (empty: the labels file's are used)."""
    labels_loc = find_labels(root)
    if labels_loc is None:
        raise ValueError(f"{root.join(name).url} has no labels: put {DEVKIT} (the ImageNet "
                         f"devkit) or {LABELS_CSV} (lines 'filename,wnid') beside it in "
                         f"{root.url}, or ingest the train archive alone")
    labels = load_labels(labels_loc)
    index = {w: i for i, w in enumerate(classes or labels.wnids)}
    loc = root.join(name)
    items, seen = [], set()
    for m in _scan(loc, name, "val", rejects, buffer_size=SCAN_BUFFER):
        origin = f"{name}#{m.name}"
        if m.isdir():
            continue
        base = posixpath.basename(m.name)
        wnid = labels.by_stem.get(base.rsplit(".", 1)[0])
        if not m.isfile():
            why = f"a {member_type(m)} member, not an image; not read"
        elif m.name in seen:
            why = f"a second {m.name} in {name}; the first is read, this one is not"
        elif wnid is None:
            why = (f"no label: {labels.file} has no line for {base}; add one to "
                   f"{LABELS_CSV} ('{base},WNID') or use the ILSVRC2012 devkit")
        elif wnid not in index:
            why = (f"label {wnid} (from {labels.file}) is not one of the {len(index)} "
                   f"classes ({ARCHIVES['train'] if classes else labels.file}); not read")
        else:
            seen.add(m.name)
            items.append((IMAGE, name, m.name, m.offset_data, m.size, index[wnid]))
            continue
        rejects.append(Reject(origin, why, "val"))
    stamp = combine_stamps([_stamp(loc), _stamp(labels_loc)])
    size = shard_size_for(options, len(items))
    shards = [ShardSpec(KIND, root.url, "val", i, PackedItems(group), stamp)
              for i, group in enumerate(chunk(items, size))]
    return shards, labels.wnids


def _scan(loc: Location, name: str, split: str, rejects: list[Reject],
          buffer_size: int) -> list[tarfile.TarInfo]:
    """The members of the archive at ``loc`` from its headers (data skipped by seeks).
    Damage after the first header: the members before it, and a reject naming the byte
    offset. An archive that is not a tar at all raises ValueError."""
    members: list[tarfile.TarInfo] = []
    try:
        f = open_input(loc, seekable=True)
    except OSError as exc:
        raise ValueError(f"{loc.url}: cannot open ({exc}); check the path and its "
                         "permissions") from exc
    with f:
        end = loc.size() or 0
        reader = window(f, 0, end, buffer_size)
        try:
            tar = tarfile.open(fileobj=reader, mode="r:")
            members.extend(tar)
            stop = tar.offset
        except READ_ERRORS as exc:
            if not members:
                raise ValueError(f"{loc.url} is not a readable tar archive "
                                 f"({type(exc).__name__}: {exc}); download {name} again "
                                 "(image-net.org publishes its checksums)") from exc
            last = members[-1]
            truncated = last.offset_data + last.size > end    # its data runs past the end
            if truncated:
                members.pop()
            lost = "it and the members after it" if truncated else "the members after it"
            rejects.append(Reject(f"{name}#{last.name}", f"damaged archive at or after member "
                                  f"{last.name!r} (header at byte {last.offset}): "
                                  f"{type(exc).__name__}: {exc}; {lost} are lost; download "
                                  f"{name} again", split))
            return members
        if block_after(reader, stop, end).strip(b"\0"):
            rejects.append(Reject(f"{name}@{stop}", f"invalid tar header at byte {stop}; "
                                  "the members after it are lost", split))
    return members


def read(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """The images of one spec: a class tar streamed from its byte range (train), or a run
    of images read from one byte range (val)."""
    first = spec.items[0]
    archive = first[1]
    loc = resolve(spec.source).join(archive)
    try:
        f = open_input(loc, seekable=True)
    except OSError as exc:
        for item in spec.items:
            yield Reject(f"{archive}#{item[2]}", f"unreadable archive: {exc}", spec.split)
        return
    with f:
        if first[0] == CLASS_TAR:
            yield from _read_class_tar(f, first, spec.split)
        else:
            yield from _read_images(f, spec.items, spec.split)


def _read_class_tar(f: BinaryIO, item: tuple, split: str) -> Iterator[RawSample | Reject]:
    """Every regular file of one class tar, labelled ``label``; damage rejects the rest."""
    _kind, archive, member, offset, size, label = item
    where = f"{archive}#{member}"
    reader = window(f, offset, size)
    seen: set[str] = set()
    m = None
    try:
        tar = tarfile.open(fileobj=reader, mode="r|")
        for m in tar:
            if m.isdir():
                continue
            origin = f"{where}#{m.name}"
            if not m.isfile():
                yield Reject(origin, f"a {member_type(m)} member, not read", split)
            elif m.name in seen:
                yield Reject(origin, f"a second {m.name} in {member}; the first is kept, "
                             "this one is not", split)
            else:
                seen.add(m.name)
                data = tar.extractfile(m).read()    # type: ignore[union-attr]
                yield RawSample(make_key(origin), label, origin, data)
        stop = tar.offset
    except READ_ERRORS as exc:
        if m is None:
            yield Reject(where, f"not a tar archive ({type(exc).__name__}: {exc}): the "
                         f"class tar at byte {offset} of {archive} cannot be read, so none "
                         f"of its images are ingested; download {archive} again "
                         "(image-net.org publishes its checksums)", split)
        else:
            yield Reject(f"{where}#{m.name}", f"damaged class tar at member {m.name!r} "
                         f"(header at byte {m.offset} of {member}): {type(exc).__name__}: "
                         f"{exc}; this image and any after it in {member} are lost", split)
        return
    if block_after(reader, stop, size).strip(b"\0"):
        yield Reject(f"{where}@{stop}", f"invalid tar header at byte {stop} of {member}; "
                     f"the images after it in {member} are lost", split)


def _read_images(f: BinaryIO, items: tuple, split: str) -> Iterator[RawSample | Reject]:
    """The val images of ``items`` (ascending offsets), read through one byte range."""
    start = items[0][3]
    end = max(offset + size for _k, _a, _m, offset, size, _l in items)
    reader = window(f, start, end - start)
    for _kind, archive, member, offset, size, label in items:
        origin = f"{archive}#{member}"
        try:
            reader.seek(offset - start)
            data = reader.read(size)
        except OSError as exc:
            yield Reject(origin, f"unreadable: {exc}", split)
            continue
        if len(data) != size:
            yield Reject(origin, f"truncated archive: {size} bytes expected at byte {offset} "
                         f"of {archive}, {len(data)} there", split)
            continue
        yield RawSample(make_key(origin), label, origin, data)


def _wnid(member: str) -> str:
    return posixpath.basename(member)[:-len(".tar")]
