"""What each variant stores about a sample, made cheap to show on its page.

- reinforce (ImageNet+): the ``K`` stored augmentation records of a training image are
  replayed on the parent's image (:func:`shardforge.augment.apply_params`, pixel-exact as in
  training) and shown with the teacher's stored top-K classes and probabilities;
- unlearnable (CUDA): the class filters come from a private key the catalog never stores
  (only its fingerprint), so they cannot be shown; the sample's ``poisoned`` flag is in its
  metadata and :func:`difference` maps where the variant's pixels differ from its parent's;
- distill (RDED): the metadata lists each patch's source key and box: linked to the parent;
- stylize: the metadata holds ``style_id`` / ``style_key``; :func:`style_png` reads that
  style from the build's style set (its ``styles`` parameter), as the transform saw it.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow.parquet as pq

from shardforge.names import check_relative_path
from shardforge.storage import resolve
from shardforge.view.charts import heat_map_png
from shardforge.view.datasets import class_name, images_of, position_of, summary_of
from shardforge.view.images import Encoded, sample_pixels


@lru_cache(maxsize=64)
def style_png(out: str, style_key: str, size: int = 128) -> Encoded:
    """The style image ``style_key`` of the stylized dataset at ``out`` as a ``size`` px PNG
    (its style set's preprocessed 224 px square, shrunk). KeyError when ``out`` is not a
    stylized build or its style set lacks the key; StyleSetError when the set is gone."""
    from shardforge.formats.area import resize_area
    from shardforge.variants.stylize.styles import style_image

    variant = summary_of(out).get("variant") or {}
    location = (variant.get("params") or {}).get("styles")
    if variant.get("name") != "stylize" or not location:
        raise KeyError(f"{out} is not a stylized build (no style set recorded)")
    pixels = resize_area(style_image(location, style_key), (size, size))
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(pixels).save(buf, "PNG")
    return Encoded(buf.getvalue(), "image/png")


@dataclass(frozen=True)
class StoredAugs:
    """A reinforced sample's stored augmentations: ``records`` (one per augmentation, in
    augmentation order, the policy's record dtype), the teacher's ``topk`` class indices
    and probabilities (``A x K``), the ``policy`` and the reinforced ``split``."""

    split: str
    policy: object
    records: np.ndarray
    topk_indices: np.ndarray
    topk_probs: np.ndarray


def is_reinforced(out: str) -> bool:
    """Whether the dataset at ``out`` is a reinforced one (stores augmentations)."""
    return "reinforce" in summary_of(out)


def reinforced_split(out: str) -> str | None:
    """The split a reinforced dataset at ``out`` stores augmentations of (else None)."""
    section = summary_of(out).get("reinforce")
    return section["split"] if section else None


@lru_cache(maxsize=256)
def stored_augmentations(out: str, key: str) -> StoredAugs | None:
    """The stored augmentations of sample ``key`` of the reinforced dataset at ``out``, or
    None when it stores none for that key. Reads only the reinforcement shard aligned with
    the parent tar holding the key (``NAME-SPLIT-NNNNNN.parquet``), filtered by key;
    the other shards only when that one lacks it. ValueError naming the file when a
    recorded path is unsafe."""
    from shardforge.augment import AugPolicy, params_from_columns

    section = summary_of(out)["reinforce"]
    split, files = section["split"], section["files"]
    where = f"the reinforce section of {out}/summary.json"
    for rec in files:
        check_relative_path(rec["path"], "file path", where, "rerun pipelines/reinforce.py")
    index = images_of(out).splits.get(split)
    p = position_of(out, split, key) if index is not None else None
    if p is None:
        return None
    tar = posixpath.basename(index.shard_urls[int(index.shard[p])])
    number = tar.rsplit("-", 1)[-1].removesuffix(".tar")
    first = [r for r in files if r["path"].endswith(f"-{split}-{number}.parquet")]
    policy = AugPolicy.from_dict(section["policy"])
    root = resolve(out)
    for rec in first + [r for r in files if r not in first]:
        loc = root.join(rec["path"])
        table = pq.read_table(loc.path, filesystem=loc.fs, filters=[("key", "==", key)])
        if not table.num_rows:
            continue
        table = table.sort_by("aug")
        cols = {c: table[c].to_numpy() for c in table.column_names if c.startswith("aug_")}
        k = int(section["top_k"])
        idx = table["topk_indices"].combine_chunks().flatten().to_numpy().reshape(-1, k)
        prob = table["topk_probs"].combine_chunks().flatten().to_numpy(
            zero_copy_only=False).reshape(-1, k)
        return StoredAugs(split, policy, params_from_columns(cols, policy),
                          idx.astype(np.int64), prob.astype(np.float32))
    return None


def teacher_top(out: str, augs: StoredAugs) -> list[list[tuple[str, float]]]:
    """Per stored augmentation: the teacher's top-K as ``(class name, probability)``."""
    ds = images_of(out)
    return [[(class_name(ds, int(c)), float(p)) for c, p in zip(ci, cp, strict=True)]
            for ci, cp in zip(augs.topk_indices, augs.topk_probs, strict=True)]


@lru_cache(maxsize=256)
def replayed_view(out: str, key: str, aug: int) -> Encoded:
    """Stored augmentation ``aug`` of ``key`` replayed on the parent image (and, for a
    mixing record, its partner's): the PNG of the view the student trains on. ValueError
    when the key has no such augmentation; the read faults of
    :func:`shardforge.view.images.sample_pixels` when the image cannot be read."""
    from PIL import Image

    from shardforge.augment import apply_params

    augs = stored_augmentations(out, key)
    if augs is None or not 0 <= aug < len(augs.records):
        have = 0 if augs is None else len(augs.records)
        raise ValueError(f"sample {key!r} has {have} stored augmentations; no number {aug}")
    row = augs.records[aug]
    pixels = sample_pixels(out, augs.split, key)
    partner = None
    if augs.policy.mixing and int(row["partner"]) >= 0:
        index = images_of(out).splits[augs.split]
        p = position_of(out, augs.split, key)
        shard = index.shard[p]
        q = int(np.argmax(index.shard == shard)) + int(row["partner"])
        partner = sample_pixels(out, augs.split, str(index.key[q]))
    view = apply_params(np.array(pixels), row, augs.policy,
                        partner=None if partner is None else np.array(partner))
    buf = io.BytesIO()
    Image.fromarray(view.permute(1, 2, 0).numpy()).save(buf, "PNG")
    return Encoded(buf.getvalue(), "image/png")


@lru_cache(maxsize=512)
def difference(out: str, other: str, split: str, key: str) -> Encoded:
    """A heat map of ``|this - other|`` (mean over RGB) for sample ``key`` of ``split`` in
    the datasets at ``out`` and ``other``, e.g. a CUDA variant and its parent: where, and how
    much, the variant changed the pixels. ValueError naming both sizes when they differ
    (a variant that resized or cropped)."""
    a = sample_pixels(out, split, key).astype(np.int16)
    b = sample_pixels(other, split, key).astype(np.int16)
    if a.shape != b.shape:
        raise ValueError(f"sizes differ ({a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x"
                         f"{b.shape[0]} px): the variant resized or cropped; no pixel map")
    return Encoded(heat_map_png(np.abs(a - b).mean(axis=2)), "image/png")


def rded_patches(meta: dict) -> list[dict]:
    """An RDED sample's patches (``key``, ``box``, ``loss``) from its metadata, in grid
    order; ``[]`` for other samples."""
    patches = meta.get("patches") if meta.get("method") == "rded" else None
    return [p for p in patches if isinstance(p, dict) and "key" in p] if patches else []
