"""Built-in procedural demo dataset: an ImageNet-like toy set for texture-vs-shape experiments.

Every image shows one large shape (the class) filled with a texture, on a cluttered background.

* ``train``: the texture is the class's own texture with probability ``TRAIN_TEXTURE_P`` (0.8),
  otherwise the texture of a random other class (texture is a strong but imperfect cue).
* ``val``: the texture is drawn uniformly over the classes, independent of the label, so only the
  shape generalises from train to val.

Layout follows torchvision ``ImageFolder`` / ImageNet::

    ROOT/train/<class>/<class>_000000.JPEG
    ROOT/val/<class>/<class>_000000.JPEG

Only numpy and Pillow are used; each image gets its own ``numpy.random.Generator`` seeded from
``(seed, split, class, index)``, so the output is deterministic and per-image independent.
"""

from __future__ import annotations

import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

from shardforge.sources.demo_shapes import shape_mask
from shardforge.sources.demo_textures import (
    NUM_TEXTURES,
    Grid,
    hsv,
    noise_image,
    ramp_image,
    rotated,
    texture_image,
)
from shardforge.storage import replace_durably

__all__ = ["CLASS_NAMES", "DemoSpec", "generate_demo_data", "render_demo_image"]

#: Shape classes, in "catalogue" order: ``DemoSpec(num_classes=n)`` uses the first ``n``. Folder
#: names are these strings; the class index is the position in *sorted* order (as ImageFolder).
CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "heart",
    "ellipse",
    "diamond",
    "crescent",
    "arrow",
    "chevron",
    "hourglass",
    "semicircle",
    "tee",
)

SPLITS: tuple[str, ...] = ("train", "val")
assert NUM_TEXTURES == len(CLASS_NAMES)   # one texture per class
TRAIN_TEXTURE_P = 0.8  # probability that a train image uses its own class's texture
MAX_ASPECT = 1.5  # images range from 2:3 to 3:2 (like most photos)
_SPLIT_IDS = {"train": 0, "val": 1}
_FILE_RE = re.compile(r"^[a-z]+_\d{6}\.JPEG$")


@dataclass(frozen=True)
class DemoSpec:
    """Parameters of the demo dataset; the same spec always produces byte-identical files."""

    num_classes: int = 10  # first ``num_classes`` entries of CLASS_NAMES
    train_per_class: int = 80
    val_per_class: int = 20
    seed: int = 0
    min_side: int = 128  # image sides drawn in [min_side, max_side], varied aspect ratios
    max_side: int = 512
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(CLASS_NAMES):
            raise ValueError(
                f"num_classes must be in [2, {len(CLASS_NAMES)}], got {self.num_classes}"
            )
        if self.train_per_class < 0 or self.val_per_class < 0:
            raise ValueError("train_per_class and val_per_class must be >= 0")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if not 32 <= self.min_side <= self.max_side:
            raise ValueError("need 32 <= min_side <= max_side")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be in [1, 100]")

    @property
    def classes(self) -> list[str]:
        """Class (folder) names in sorted order; the list index is the ImageFolder label."""
        return sorted(CLASS_NAMES[: self.num_classes])


def _add_centred(img: Image.Image, delta: Image.Image) -> Image.Image:
    """img + (delta - 128), clipped: adds a zero-centred perturbation stored around 128."""
    return ImageChops.add(img, delta, scale=1.0, offset=-128)


def _background(rng: np.random.Generator, w: int, h: int, grid: Grid) -> Image.Image:
    """Muted, cluttered background: gradient and/or multi-scale colour noise, plus grain."""
    kind = rng.integers(3)
    base = hsv(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.35, 0.8))
    if kind == 0:  # linear gradient between two muted colours, lightly mottled
        other = hsv(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.3, 0.85))
        u, _ = rotated(grid, rng.uniform(0, 2 * math.pi))
        u = np.broadcast_to(u, (h, w))
        lo, hi = float(u.min()), float(u.max())
        bg = ramp_image((u - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1.0)), base, other)
        bg = _add_centred(bg, noise_image(rng, w, h, min(w, h) / 3, 3, amp=0.15))
    else:  # clutter: colour value noise around the base colour (kind 2 adds a busy fine scale)
        cell = min(w, h) / rng.uniform(2, 5)
        bg = noise_image(rng, w, h, cell, 3, centre=base, amp=rng.uniform(0.12, 0.24))
        if kind == 2:
            fine = noise_image(rng, w, h, rng.uniform(6, 16), 3, amp=rng.uniform(0.08, 0.16))
            bg = _add_centred(bg, fine)
    a = int(rng.integers(3, 11))  # uniform per-pixel grain in [-a, a] grey levels
    grain = rng.integers(128 - a, 128 + a + 1, size=(h, w), dtype=np.uint8)
    return _add_centred(bg, Image.fromarray(grain, "L").convert("RGB"))


def _image_size(rng: np.random.Generator, spec: DemoSpec) -> tuple[int, int]:
    lo, hi = spec.min_side, spec.max_side
    ratio = math.exp(rng.uniform(0, math.log(min(MAX_ASPECT, hi / lo))))
    short = int(rng.integers(lo, max(lo, int(hi / ratio)) + 1))
    long = min(hi, max(short, round(short * ratio)))
    return (long, short) if rng.random() < 0.5 else (short, long)


def _image_rng(spec: DemoSpec, split: str, class_name: str, index: int) -> np.random.Generator:
    key = [spec.seed, _SPLIT_IDS[split], CLASS_NAMES.index(class_name), index]
    return np.random.default_rng(np.random.SeedSequence(key))


def _texture_for(rng: np.random.Generator, split: str, cls_id: int, num_classes: int) -> int:
    if split == "val":
        return int(rng.integers(num_classes))
    if rng.random() < TRAIN_TEXTURE_P:
        return cls_id
    other = int(rng.integers(num_classes - 1))
    return other + (other >= cls_id)


def render_demo_image(
    spec: DemoSpec, split: str, class_name: str, index: int, texture: str | None = None
) -> tuple[Image.Image, dict]:
    """Render one image deterministically; returns it and its metadata (shape, texture, size).

    ``texture``: a class name whose texture replaces the drawn one (cue-conflict stimuli);
    everything else is as in the split's image ``index``.
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    cls_id = CLASS_NAMES.index(class_name)
    if cls_id >= spec.num_classes:
        raise ValueError(f"{class_name!r} is not among the first {spec.num_classes} classes")
    rng = _image_rng(spec, split, class_name, index)
    w, h = _image_size(rng, spec)
    tex_id = _texture_for(rng, split, cls_id, spec.num_classes)
    if texture is not None:
        tex_id = CLASS_NAMES.index(texture)
    grid = (np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None])

    mask = shape_mask(class_name, rng, w, h)
    period = min(w, h) * rng.uniform(0.06, 0.12)
    fg = texture_image(tex_id, rng, w, h, period, grid)
    bg = _background(rng, w, h, grid)
    meta = {"shape": class_name, "texture": CLASS_NAMES[tex_id], "size": (w, h)}
    return Image.composite(fg, bg, mask), meta


def _encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically unless the file already holds exactly ``data``; True if written."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    replace_durably(str(tmp), str(path))
    return True


def _remove_stale(class_dir: Path, keep: set[str], rmdir: bool = False) -> None:
    """Delete generator-named files (``name_NNNNNN.JPEG``) not produced by the current spec."""
    if not class_dir.is_dir():
        return
    for f in class_dir.iterdir():
        if f.name not in keep and _FILE_RE.match(f.name) and f.is_file():
            f.unlink()
    if rmdir and not any(class_dir.iterdir()):
        class_dir.rmdir()


def generate_demo_data(root: str | os.PathLike, spec: DemoSpec = DemoSpec()) -> dict:  # noqa: B008
    """Write ROOT/{train,val}/<class>/<class>_NNNNNN.JPEG for ``spec`` and return a summary.

    The summary is ``{"root": str, "classes": [sorted names], "counts": {split: {cls: n}}}``.
    Deterministic (same spec -> byte-identical files) and idempotent: identical files are left
    untouched, others rewritten atomically, and generator-named files left over from a larger
    earlier spec are removed.
    """
    root_path = Path(root)
    classes = spec.classes
    per_split = {"train": spec.train_per_class, "val": spec.val_per_class}
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        n = per_split[split]
        counts[split] = {}
        for name in CLASS_NAMES:  # clean classes dropped since an earlier, larger spec
            if name not in classes:
                _remove_stale(root_path / split / name, set(), rmdir=True)
        for name in classes:
            class_dir = root_path / split / name
            class_dir.mkdir(parents=True, exist_ok=True)
            keep = set()
            for i in range(n):
                fname = f"{name}_{i:06d}.JPEG"
                img, _ = render_demo_image(spec, split, name, i)
                _write_if_changed(class_dir / fname, _encode_jpeg(img, spec.jpeg_quality))
                keep.add(fname)
            _remove_stale(class_dir, keep)
            counts[split][name] = n
    return {"root": str(root_path), "classes": classes, "counts": counts}
