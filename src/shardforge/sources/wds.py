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
    split_from_name,
)
from shardforge.storage import resolve

KIND = "wds"
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff", "gif")
LABEL_EXTS = ("cls", "label", "target", "cls2")


def plan(url: str, options: SourceOptions) -> SourcePlan:
    """One shard spec per input tar, numbered per split in sorted path order."""
    root, tars = list_inputs(url, ".tar")
    per_split: dict[str, int] = {}
    shards = []
    for path in tars:
        rel = posixpath.relpath(path, root.path)
        split = split_from_name(rel, options.default_split)
        index = per_split.get(split, 0)
        per_split[split] = index + 1
        shards.append(ShardSpec(KIND, root.url, split, index, (rel,)))
    return SourcePlan(KIND, url, [], shards, [])


def read(spec: ShardSpec, options: SourceOptions) -> Iterator[RawSample | Reject]:
    """Stream one tar, grouping members by key; samples without image or label are rejected."""
    (rel,) = spec.items
    loc = resolve(spec.source).join(rel)
    try:
        with loc.fs.open_input_stream(loc.path) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            yield from _samples(tar, rel, spec.split)
    except (OSError, tarfile.TarError) as exc:
        yield Reject(rel, f"unreadable tar (samples after the error are lost): {exc}", spec.split)


def _samples(tar: tarfile.TarFile, rel: str, split: str) -> Iterator[RawSample | Reject]:
    current: str | None = None
    parts: dict[str, bytes] = {}
    for member in tar:
        if not member.isfile():
            continue
        base = posixpath.basename(member.name)
        if "." not in base:
            continue
        key = posixpath.join(posixpath.dirname(member.name), base.split(".", 1)[0])
        ext = base.split(".", 1)[1].lower()
        if key != current:
            if current is not None:
                yield _to_sample(current, parts, rel, split)
            current, parts = key, {}
        f = tar.extractfile(member)
        parts[ext] = f.read() if f is not None else b""
    if current is not None:
        yield _to_sample(current, parts, rel, split)


def _to_sample(key: str, parts: dict[str, bytes], rel: str, split: str) -> RawSample | Reject:
    origin = f"{rel}#{key}"
    image = next((parts[e] for e in IMAGE_EXTS if e in parts), None)
    if image is None:
        return Reject(origin, f"no image member (has: {sorted(parts)})", split)
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
