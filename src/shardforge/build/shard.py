"""Build one output shard: read, decode, resize, encode once, write both formats.

Per shard spec this writes, each under a temporary name then renamed:
``wds/NAME-SPLIT-NNNNNN.tar``, ``_work/SPLIT-NNNNNN.beton`` (a complete .beton part,
merged later), ``_work/SPLIT-NNNNNN.parquet`` (its index rows) and, last,
``_work/SPLIT-NNNNNN.json`` (the manifest: spec hash, file sizes and sha256, rejects).
A shard counts as complete only when the manifest's spec hash matches and every file it
names re-hashes to the recorded sha256, so a rerun skips exactly the finished shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from shardforge.build.config import ShardJob
from shardforge.build.guard import SampleGuard, label_problem, transform_isolating
from shardforge.build.transform import Decoded
from shardforge.engine.cluster import node_id
from shardforge.engine.faults import checkpoint
from shardforge.engine.manifest import verified_result, write_manifest
from shardforge.formats import beton
from shardforge.formats.arrow_rows import rows_to_table
from shardforge.formats.image import (
    MAX_SIDE,
    ImageParams,
    RejectedImage,
    StoredImage,
    choose_jpeg,
    decode_rgb,
    encode_jpeg,
    process_image,
    resize_max_side,
)
from shardforge.formats.wds import png_bytes, sample_members, write_tar
from shardforge.layout.files import WDS_DIR, WORK_DIR, tar_name
from shardforge.sources import RawSample, Reject, ShardSpec, read_shard
from shardforge.storage import Location, replace_durably, resolve

if TYPE_CHECKING:
    from shardforge.build.transform import Transform

INDEX_SCHEMA = pa.schema([
    ("key", pa.string()), ("label", pa.int64()), ("split", pa.string()),
    ("shard", pa.string()), ("offset", pa.int64()), ("size", pa.int64()),
    ("format", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
    ("orig_width", pa.int32()), ("orig_height", pa.int32()), ("sha256", pa.string()),
    ("origin", pa.string()),
])


@dataclass
class ShardResult:
    """What a shard task reports back to the driver (small: no image data)."""

    split: str
    index: int
    num_samples: int
    rejects: list[dict]
    class_counts: dict[int, int]
    bytes_written: int
    reused: bool = False
    files: dict[str, dict] = field(default_factory=dict)
    node: str = ""           # Ray node id that built it ("" outside Ray)


def shard_paths(job: ShardJob, spec: ShardSpec) -> dict[str, Location]:
    """Where a shard's files go."""
    out = resolve(job.out)
    return {
        "tar": out.join(WDS_DIR, tar_name(job.name, spec.split, spec.index)),
        "part": out.join(WORK_DIR, f"{spec.name}.beton"),
        "index": out.join(WORK_DIR, f"{spec.name}.parquet"),
        "manifest": out.join(WORK_DIR, f"{spec.name}.json"),
    }


def load_complete(job: ShardJob, spec: ShardSpec) -> ShardResult | None:
    """The recorded result if this shard is complete and verified, else None."""
    paths = shard_paths(job, spec)
    recorded = verified_result(paths["manifest"], job.spec_hash(spec), paths)
    if recorded is None:
        return None
    try:
        result = ShardResult(**recorded)
        result.class_counts = {int(k): v for k, v in result.class_counts.items()}
    except (TypeError, ValueError, AttributeError):     # a damaged manifest: rebuild
        return None
    result.reused = True
    return result


@dataclass
class EncodedSample:
    """One sample ready to write: tar image bytes + extension, the .beton sample, metadata."""

    key: str
    label: int
    origin: str
    image: StoredImage      # what goes into the .beton (JPEG bytes or raw pixels)
    tar_image: bytes        # what goes into the tar (the JPEG, or a PNG of raw pixels)
    ext: str                # "jpg" | "png"
    meta: dict


def build_shard(spec: ShardSpec, job: ShardJob, transform: Transform | None = None) -> ShardResult:
    """Build (or verify and reuse) one shard; see the module docstring for the files.

    With ``job.variant``, ``transform`` is the variant's loaded transform (an actor passes
    the one it keeps; None: made here with ``job.variant.make_transform()`` when needed).
    """
    done = load_complete(job, spec)
    if done is not None:
        return done
    cv2.setNumThreads(1)   # one Ray task = one core; OpenCV's pool would oversubscribe
    members: list[tuple[str, bytes]] = []
    samples: list[beton.BetonSample] = []
    rows: list[dict] = []
    rejects: list[dict] = []
    for enc in _encoded(spec, job, transform, rejects):
        img = enc.image
        meta = {"key": enc.key, "label": enc.label, "origin": enc.origin,
                "orig_width": img.orig_width, "orig_height": img.orig_height,
                "width": img.width, "height": img.height, **enc.meta}
        members.extend(sample_members(enc.key, enc.tar_image, enc.ext, enc.label, meta))
        samples.append(beton.BetonSample(img.data, img.is_jpeg, img.width, img.height,
                                         enc.label))
        rows.append({"key": enc.key, "label": enc.label, "split": spec.split,
                     "format": enc.ext, "width": img.width, "height": img.height,
                     "orig_width": img.orig_width, "orig_height": img.orig_height,
                     "sha256": hashlib.sha256(enc.tar_image).hexdigest(), "origin": enc.origin})
    tar_bytes, offsets = write_tar(members)
    image_members = offsets[0::3]
    paths = shard_paths(job, spec)
    for row, member in zip(rows, image_members, strict=True):
        row.update(shard=paths["tar"].path.rsplit("/", 1)[-1], offset=member.offset,
                   size=member.size)
    index_bytes = _parquet_bytes(rows)
    for loc in paths.values():
        loc.parent().makedirs()
    paths["tar"].write_bytes_atomic(tar_bytes)
    checkpoint("shard")     # crash tests: engine/faults.py
    paths["index"].write_bytes_atomic(index_bytes)
    part_size, part_sha = _write_part(paths["part"], samples, job.page_size)
    files = {
        "tar": {"size": len(tar_bytes), "sha256": hashlib.sha256(tar_bytes).hexdigest()},
        "index": {"size": len(index_bytes), "sha256": hashlib.sha256(index_bytes).hexdigest()},
        "part": {"size": part_size, "sha256": part_sha},
    }
    result = ShardResult(spec.split, spec.index, len(samples), rejects,
                         dict(Counter(s.label for s in samples)),
                         len(tar_bytes) + part_size + len(index_bytes), False, files,
                         node_id())
    write_manifest(paths["manifest"], job.spec_hash(spec), asdict(result))
    return result


def _encoded(spec: ShardSpec, job: ShardJob, transform: Transform | None,
             rejects: list[dict]) -> Iterator[EncodedSample]:
    """The shard's samples, encoded: ingested, copied from a parent, or through a variant.

    Any exception about one sample (read, decode, convert, transform, encode, page fit)
    rejects that sample with its type and message; see :class:`SampleGuard` for the one
    case that ends the shard instead.
    """
    variant = job.variant
    guard = SampleGuard(spec, rejects)
    raws = _raw_samples(spec, job, rejects)
    if variant is None:
        for item in raws:
            with guard.sample(item.origin) as ok:
                img = process_image(item.data, item.key, job.image)
                enc = fit_page(_encode_stored(item.key, item.label, item.origin, img, {}),
                               job.page_size, job.image)
            if ok:
                yield enc
        guard.check()
        return
    if not variant.transforms(spec.split):
        for item in raws:
            with guard.sample(item.origin) as ok:
                enc = fit_page(copy_parent_sample(item), job.page_size, job.image)
            if ok:
                yield enc
        guard.check()
        return
    decoded, origins = [], {}
    for item in raws:
        with guard.sample(item.origin) as ok:
            pixels, _, _ = decode_rgb(item.data, job.image.max_pixels)
        if ok:
            decoded.append(Decoded(item.key, item.label, pixels))
            origins[item.key] = item.origin
    if not decoded:
        guard.check()
        return
    transform = transform if transform is not None else variant.make_transform()
    outputs = transform_isolating(transform, decoded, spec, guard, origins)
    seen: set[str] = set()
    for d in outputs:
        origin = origins.get(d.key, f"{variant.name}:{d.key}")
        with guard.sample(origin) as ok:
            check_output(variant.name, spec, d, seen)
            enc = fit_page(encode_decoded(d, origin, job.image), job.page_size, job.image)
        if ok:
            yield enc
    guard.check()


def _raw_samples(spec: ShardSpec, job: ShardJob, rejects: list[dict]) -> Iterator[RawSample]:
    """The spec's samples; source rejects and samples whose label is not an int in
    [0, 2**31) (what the .beton, the index and training can hold) become rejects. A variant
    that keeps a subset of the classes (its ``label_map``) drops the others and renumbers."""
    label_map = job.variant.label_map if job.variant is not None else None
    for item in read_shard(spec, job.source_options):
        if isinstance(item, Reject):
            rejects.append(asdict(item))
            continue
        problem = label_problem(item.label)
        if problem is not None:
            rejects.append(asdict(Reject(item.origin, problem, spec.split)))
            continue
        if label_map is not None:
            if item.label >= len(label_map) or label_map[item.label] < 0:
                continue
            item = RawSample(item.key, label_map[item.label], item.origin, item.data)
        yield item


def fit_page(enc: EncodedSample, page_size: int, params: ImageParams) -> EncodedSample:
    """``enc`` if it fits a .beton page; else raw pixels fall back to JPEG, else a reject.

    Rule (documented in docs/reliability.md): every sample must sit inside one page (FFCV's
    page reader), and a merged .beton has one page size, so the page never grows per
    sample. A raw sample larger than the page is stored as JPEG at ``jpeg_quality`` (in
    the tar and the .beton; the sample's json records ``stored_as_jpeg`` with the reason);
    a JPEG still larger than the page, or a side over 65535 px (uint16 in the .beton), is
    rejected with the reason.
    """
    img = enc.image
    if max(img.width, img.height) > MAX_SIDE:
        raise RejectedImage(f"side too long: {img.width}x{img.height} px; a .beton stores "
                            f"sides up to {MAX_SIDE} px")
    if len(img.data) <= page_size:
        return enc
    if img.is_jpeg:
        raise RejectedImage(f"JPEG of {len(img.data)} B is larger than the .beton page "
                            f"({page_size} B); raise --page-size or lower --max-resolution")
    jpeg = encode_jpeg(img.pixels(), params.jpeg_quality)
    if len(jpeg) > page_size:
        raise RejectedImage(f"{img.width}x{img.height} px does not fit the .beton page "
                            f"({page_size} B) raw ({len(img.data)} B) nor as JPEG "
                            f"({len(jpeg)} B); raise --page-size or lower --max-resolution")
    stored = StoredImage(jpeg, True, img.width, img.height, img.orig_width, img.orig_height)
    reason = (f"raw pixels ({len(img.data)} B) exceed the .beton page ({page_size} B); "
              f"stored as JPEG q{params.jpeg_quality}")
    return EncodedSample(enc.key, enc.label, enc.origin, stored, jpeg, "jpg",
                         {**enc.meta, "stored_as_jpeg": reason})


def _encode_stored(key: str, label: int, origin: str, img: StoredImage,
                   meta: dict) -> EncodedSample:
    if img.is_jpeg:
        return EncodedSample(key, label, origin, img, img.data, "jpg", meta)
    return EncodedSample(key, label, origin, img, png_bytes(img.pixels()), "png", meta)


def encode_decoded(d: Decoded, origin: str, params: ImageParams) -> EncodedSample:
    """Store a variant's output image with ``params`` (resized only if ``max_resolution``)."""
    pixels = resize_max_side(np.ascontiguousarray(d.pixels), params.max_resolution)
    h, w = pixels.shape[:2]
    if choose_jpeg(params, d.key, pixels.nbytes):
        img = StoredImage(encode_jpeg(pixels, params.jpeg_quality), True, w, h, w, h)
        return EncodedSample(d.key, d.label, origin, img, img.data, "jpg", d.meta)
    img = StoredImage(pixels.tobytes(), False, w, h, w, h)
    return EncodedSample(d.key, d.label, origin, img, png_bytes(pixels), "png", d.meta)


def copy_parent_sample(item: RawSample) -> EncodedSample:
    """A parent sample unchanged: its tar bytes verbatim (a JPEG stays the same JPEG in the
    .beton too; a PNG becomes raw pixels there, as the parent stored it)."""
    if item.data[:3] == b"\xff\xd8\xff":
        with Image.open(io.BytesIO(item.data)) as im:
            w, h = im.size
        img = StoredImage(item.data, True, w, h, w, h)
        return EncodedSample(item.key, item.label, item.origin, img, item.data, "jpg", {})
    pixels, w, h = decode_rgb(item.data)
    img = StoredImage(np.ascontiguousarray(pixels).tobytes(), False, w, h, w, h)
    return EncodedSample(item.key, item.label, item.origin, img, item.data, "png", {})


def check_output(variant: str, spec: ShardSpec, d: Decoded, seen: set[str]) -> None:
    """Raise ValueError naming the variant and sample when one transform output is
    unusable (a key seen before in ``seen``, a key with '.' or '/', a label outside
    [0, 2**31), meta that is not JSON, pixels that are not uint8 H x W x 3); adds the key
    to ``seen``. The caller rejects that output."""
    where = f"variant {variant!r}, shard {spec.name}, sample {d.key!r}"
    if d.key in seen:
        raise ValueError(f"{where}: the transform returned this key twice; keys must be "
                         "unique within a dataset")
    if "." in d.key or "/" in d.key:
        raise ValueError(f"{where}: keys must be free of '.' and '/'")
    seen.add(d.key)
    problem = label_problem(d.label)
    if problem is not None:
        raise ValueError(f"{where}: {problem}")
    json.dumps(d.meta, sort_keys=True)       # TypeError when the sample's json cannot be
    px = d.pixels
    if not (isinstance(px, np.ndarray) and px.dtype == np.uint8 and px.ndim == 3
            and px.shape[2] == 3):
        got = f"{type(px).__name__} {getattr(px, 'dtype', '')} {getattr(px, 'shape', '')}"
        raise ValueError(f"{where}: pixels must be a uint8 H x W x 3 numpy array, got {got}")


def _parquet_bytes(rows: list[dict]) -> bytes:
    table = rows_to_table(rows, INDEX_SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _write_part(dest: Location, samples: list[beton.BetonSample], page_size: int) -> tuple[int, str]:
    """Write a .beton part: straight into place on a local disk, via a temp file otherwise."""
    if dest.is_local:
        tmp = dest.tmp_sibling().path
        beton.write_part(tmp, samples, page_size)
        size, sha = os.path.getsize(tmp), resolve(tmp).sha256()
        replace_durably(tmp, dest.path)
        return size, sha
    with tempfile.TemporaryDirectory() as d:
        local = os.path.join(d, "part.beton")
        beton.write_part(local, samples, page_size)
        size, sha = os.path.getsize(local), resolve(local).sha256()
        dest.upload_file_atomic(local)
    return size, sha
