"""A grid of a dataset's samples, read by byte range from its shards (nothing extracted):
``shardforge catalog sample`` writes it as an image or as a standalone HTML page."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from shardforge.layout.dataset import DatasetRef
from shardforge.layout.reader import RangeReader

#: Side of one thumbnail in the grid image (px).
THUMB = 96


@dataclass(frozen=True)
class Pick:
    """One sample in the grid: its class, key, position in the split and thumbnail."""

    label: int
    class_name: str
    key: str
    position: int
    thumb: Image.Image


def choose_positions(ds: DatasetRef, split: str = "train", per_class: int = 4,
                     classes: list[str] | None = None, seed: int = 0,
                     start: int = 0) -> list[tuple[str, np.ndarray]]:
    """``(class name, positions)`` per class of ``split`` (``classes``: those names, in that
    order; default every class): the class's samples in an order drawn by a generator
    seeded by ``seed``, items ``start .. start + per_class`` of it (so consecutive pages of
    one seed never repeat a sample), sorted by position. Reads the index only. ValueError
    naming the classes the dataset lacks, or when ``per_class`` < 1 or ``start`` < 0."""
    if per_class < 1:
        raise ValueError(f"per_class {per_class} must be >= 1")
    if start < 0:
        raise ValueError(f"start {start} must be >= 0")
    index = ds.split(split)
    names = class_names(ds, split)
    wanted = classes if classes else names
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"{ds.name} has no classes {missing[:5]}; its classes are "
                         f"{names[:10]}{' ...' if len(names) > 10 else ''}")
    rng = np.random.default_rng(seed)
    chosen = []
    for name in wanted:
        positions = np.flatnonzero(index.label == names.index(name))
        take = rng.permutation(positions)[start:start + per_class] if len(positions) \
            else positions
        chosen.append((name, np.sort(take)))
    return chosen


def class_names(ds: DatasetRef, split: str = "train") -> list[str]:
    """The dataset's class names; ``"0" .. "L"`` (L: the split's largest label) when its
    summary lists none."""
    index = ds.split(split)
    top = int(index.label.max()) + 1 if len(index) else 0
    return list(ds.classes) or [str(n) for n in range(top)]


def thumbnail(blob: bytes | memoryview, is_png: bool, side: int = THUMB) -> Image.Image:
    """A stored sample's bytes decoded (:func:`shardforge.formats.decode.decode_full`) and
    shrunk to fit ``side`` x ``side`` px, aspect kept (never enlarged). Raises
    :class:`~shardforge.formats.decode.DecodeError` when the bytes do not decode."""
    from shardforge.formats.decode import decode_full

    img = Image.fromarray(decode_full(blob, is_png))
    img.thumbnail((side, side))
    return img


def pick_samples(ds: DatasetRef, split: str = "train", per_class: int = 4,
                 classes: list[str] | None = None, seed: int = 0, thumb: int = THUMB,
                 skipped: list[str] | None = None) -> list[list[Pick]]:
    """Up to ``per_class`` samples of each class of ``split`` (``classes``: those names, in
    that order; default every class), chosen by a generator seeded by ``seed``
    (:func:`choose_positions`), each as a ``thumb`` px thumbnail (aspect kept). One row per
    class. A sample whose bytes do not decode is left out and described in ``skipped``
    (``KEY: reason``). ValueError naming the classes the dataset lacks, or when
    ``per_class`` < 1."""
    from shardforge.formats.decode import DecodeError

    skipped = skipped if skipped is not None else []
    index = ds.split(split)
    chosen = choose_positions(ds, split, per_class, classes, seed)
    rows = []
    reader = RangeReader(index.shard_urls)
    try:
        for name, take in chosen:
            blobs = reader.read(index.shard[take], index.offset[take], index.size[take]) \
                if len(take) else []
            row = []
            for p, blob in zip(take.tolist(), blobs, strict=True):
                try:
                    img = thumbnail(blob, bool(index.is_png[p]), thumb)
                except DecodeError as exc:      # one damaged sample must not hide the rest
                    skipped.append(f"{index.key[p]}: {exc}")
                    continue
                row.append(Pick(int(index.label[p]), name, str(index.key[p]), p, img))
            rows.append(row)
    finally:
        reader.close()
    return rows


def grid_image(rows: list[list[Pick]], thumb: int = THUMB, pad: int = 2) -> Image.Image:
    """The thumbnails on a white canvas, one class per row, each centred in its cell."""
    width = max((len(r) for r in rows), default=0)
    cell = thumb + 2 * pad
    canvas = Image.new("RGB", (max(width, 1) * cell, max(len(rows), 1) * cell), "white")
    for y, row in enumerate(rows):
        for x, pick in enumerate(row):
            w, h = pick.thumb.size
            canvas.paste(pick.thumb, (x * cell + pad + (thumb - w) // 2,
                                      y * cell + pad + (thumb - h) // 2))
    return canvas


def grid_html(rows: list[list[Pick]], title: str) -> str:
    """A standalone HTML page: one row per class, each thumbnail inline (base64 JPEG) with
    its class and key on hover."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif}img{margin:2px;vertical-align:middle}"
             "td{padding:2px 8px}</style>", f"<h1>{html.escape(title)}</h1><table>"]
    for row in rows:
        cells = []
        for pick in row:
            buf = io.BytesIO()
            pick.thumb.save(buf, "JPEG", quality=90)
            data = base64.b64encode(buf.getvalue()).decode("ascii")
            tip = html.escape(f"{pick.class_name} / {pick.key}", quote=True)
            cells.append(f"<img src='data:image/jpeg;base64,{data}' title='{tip}' alt='{tip}'>")
        name = html.escape(row[0].class_name) if row else ""
        parts.append(f"<tr><td>{name}</td><td>{''.join(cells)}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)
