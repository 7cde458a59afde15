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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

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
TRAIN_TEXTURE_P = 0.8  # probability that a train image uses its own class's texture
MAX_ASPECT = 1.5  # images range from 2:3 to 3:2 (like most photos)
MAX_ROTATION_DEG = 30.0  # shapes are rotated uniformly in [-30, 30] degrees (mostly upright)
_SPLIT_IDS = {"train": 0, "val": 1}
_FILE_RE = re.compile(r"^[a-z]+_\d{6}\.JPEG$")
_SUPERSAMPLE = 2  # shape masks are drawn at 2x and box-filtered down (anti-aliasing)


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


# --------------------------------------------------------------------------------------------
# Shapes: each is a list of (polygon, fill) in unit coordinates; fill=False erases (holes).
# --------------------------------------------------------------------------------------------

Poly = list[tuple[np.ndarray, bool]]


def _ngon(
    n: int, r: float = 1.0, start: float = -math.pi / 2, cx: float = 0.0, cy: float = 0.0
) -> np.ndarray:
    a = start + np.arange(n) * (2 * math.pi / n)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def _circle(
    r: float = 1.0, cx: float = 0.0, cy: float = 0.0, ry: float | None = None
) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, 120, endpoint=False)
    return np.stack([cx + r * np.cos(a), cy + (r if ry is None else ry) * np.sin(a)], axis=1)


def _shape_polys(name: str, rng: np.random.Generator) -> Poly:
    if name == "circle":
        return [(_circle(), True)]
    if name == "square":
        return [(_ngon(4, start=math.pi / 4), True)]
    if name == "triangle":
        return [(_ngon(3), True)]
    if name == "star":
        outer, inner = (
            _ngon(5),
            _ngon(5, r=rng.uniform(0.38, 0.48), start=-math.pi / 2 + math.pi / 5),
        )
        pts = np.empty((10, 2))
        pts[0::2], pts[1::2] = outer, inner
        return [(pts, True)]
    if name == "cross":
        w = rng.uniform(0.26, 0.34)
        pts = [
            (-w, -1),
            (w, -1),
            (w, -w),
            (1, -w),
            (1, w),
            (w, w),
            (w, 1),
            (-w, 1),
            (-w, w),
            (-1, w),
            (-1, -w),
            (-w, -w),
        ]
        return [(np.array(pts, dtype=float), True)]
    if name == "ring":
        return [(_circle(), True), (_circle(rng.uniform(0.5, 0.62)), False)]
    if name == "hexagon":
        return [(_ngon(6, start=0.0), True)]
    if name == "heart":
        t = np.linspace(0, 2 * math.pi, 120, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return [(np.stack([x, y], axis=1), True)]
    if name == "ellipse":
        return [(_circle(1.0, ry=1.0 / rng.uniform(2.1, 2.6)), True)]
    if name == "diamond":
        b = 1.0 / rng.uniform(1.8, 2.2)
        return [(np.array([(0, -1), (b, 0), (0, 1), (-b, 0)], dtype=float), True)]
    if name == "crescent":
        return [
            (_circle(), True),
            (_circle(rng.uniform(0.8, 0.9), cx=rng.uniform(0.4, 0.5)), False),
        ]
    if name == "arrow":
        s, h = rng.uniform(0.18, 0.24), rng.uniform(0.55, 0.65)
        pts = [(-1, -s), (0.15, -s), (0.15, -h), (1, 0), (0.15, h), (0.15, s), (-1, s)]
        return [(np.array(pts, dtype=float), True)]
    if name == "chevron":
        d = rng.uniform(0.45, 0.6)
        pts = [(-0.8, -1), (-0.8 + d, -1), (0.8, 0), (-0.8 + d, 1), (-0.8, 1), (0.8 - d, 0)]
        return [(np.array(pts, dtype=float), True)]
    if name == "hourglass":
        w = rng.uniform(0.06, 0.12)
        pts = [(-0.8, -1), (0.8, -1), (w, 0), (0.8, 1), (-0.8, 1), (-w, 0)]
        return [(np.array(pts, dtype=float), True)]
    if name == "semicircle":
        a = np.linspace(0, math.pi, 61)
        return [(np.stack([np.cos(a), np.sin(a)], axis=1), True)]
    if name == "tee":
        b, s = rng.uniform(0.4, 0.5), rng.uniform(0.2, 0.26)
        top = -1 + b
        pts = [(-1, -1), (1, -1), (1, top), (s, top), (s, 1), (-s, 1), (-s, top), (-1, top)]
        return [(np.array(pts, dtype=float), True)]
    raise KeyError(name)


def _normalise(polys: Poly) -> Poly:
    """Centre on the bounding box of the filled parts and scale so the max radius is 1."""
    filled = np.concatenate([p for p, fill in polys if fill])
    centre = (filled.min(0) + filled.max(0)) / 2
    radius = np.linalg.norm(filled - centre, axis=1).max()
    return [((p - centre) / radius, fill) for p, fill in polys]


def _shape_mask(name: str, rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Anti-aliased alpha mask ("L", W x H) of one randomly placed, scaled and rotated shape."""
    polys = _normalise(_shape_polys(name, rng))
    short = min(w, h)
    radius = short * rng.uniform(0.35, 0.48)  # radius of the shape's bounding circle
    cx = rng.uniform(radius, w - radius)
    cy = rng.uniform(radius, h - radius)
    theta = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    flip = 1.0 if rng.random() < 0.5 else -1.0
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    ss = _SUPERSAMPLE
    mask = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(mask)
    for pts, fill in polys:
        p = (pts * [flip, 1.0]) @ rot.T * radius + [cx, cy]
        draw.polygon([tuple(q) for q in (p * ss).tolist()], fill=255 if fill else 0)
    return mask.reduce(ss)


# --------------------------------------------------------------------------------------------
# Textures: each returns a scalar field t (H, W) in [0, 1]; a palette maps it to RGB.
# --------------------------------------------------------------------------------------------

Grid = tuple[np.ndarray, np.ndarray]  # xs (1, W), ys (H, 1), float32 pixel coordinates


def _rotated(g: Grid, theta: float) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = g
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    return xs * c + ys * s, ys * c - xs * s


def _frac(v: np.ndarray) -> np.ndarray:
    return v - np.floor(v)


def _square_wave(v: np.ndarray, sharp: float = 3.0) -> np.ndarray:
    return np.clip(0.5 + sharp * np.sin(v), 0.0, 1.0)


def _noise_image(
    rng: np.random.Generator,
    w: int,
    h: int,
    cell: float,
    channels: int = 0,
    centre: float | np.ndarray = 0.5,
    amp: float = 1.0,
) -> Image.Image:
    """Value noise ``centre + amp * U(-0.5, 0.5)`` (0..1 scale) on a coarse grid of ``cell``
    pixels, upsampled bicubically to a W x H "L" (channels=0) or "RGB" (channels=3) image."""
    gw, gh = max(2, round(w / cell) + 2), max(2, round(h / cell) + 2)
    shape = (gh, gw, channels) if channels else (gh, gw)
    small = (centre + amp * (rng.random(shape) - 0.5)) * 255.0 + 0.5
    img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8))
    return img.resize((w, h), Image.BICUBIC)


def _smooth_noise(rng: np.random.Generator, w: int, h: int, cell: float) -> np.ndarray:
    """Value noise field (H, W) in [0, 1] with features of about ``cell`` pixels."""
    return np.asarray(_noise_image(rng, w, h, cell), dtype=np.float32) * np.float32(1.0 / 255.0)


def _tex_stripes(rng, g, p, w, h):
    u, _ = _rotated(g, rng.uniform(0, math.pi))
    return _square_wave(u * (2 * math.pi / p))


def _tex_checker(rng, g, p, w, h):
    u, v = _rotated(g, rng.uniform(0, math.pi / 2))
    k = np.float32(2 * math.pi / p)
    return _square_wave(np.sin(u * k) * np.sin(v * k) * 4, sharp=1.0)


def _tex_dots(rng, g, p, w, h):
    u, v = _rotated(g, rng.uniform(0, math.pi / 2))
    fu = _frac(u / p) - 0.5
    fv = _frac(v / p) - 0.5
    r = rng.uniform(0.25, 0.35)
    return np.clip((r * r - (fu * fu + fv * fv)) * 40 + 0.5, 0.0, 1.0)


def _tex_blotches(rng, g, p, w, h):
    n = _smooth_noise(rng, w, h, p * 0.8)
    return np.clip((n - 0.5) * 6 + 0.5, 0.0, 1.0)


def _tex_waves(rng, g, p, w, h):
    u, v = _rotated(g, rng.uniform(0, math.pi))
    amp, k2 = p * rng.uniform(0.3, 0.5), 2 * math.pi / (p * rng.uniform(1.5, 2.5))
    return _square_wave((u + amp * np.sin(v * np.float32(k2))) * np.float32(2 * math.pi / p))


def _tex_rings(rng, g, p, w, h):
    xs, ys = g
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    r = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    return _square_wave(r * np.float32(2 * math.pi / p))


def _tex_grid(rng, g, p, w, h):
    u, v = _rotated(g, rng.uniform(0, math.pi / 2))
    fu = np.abs(_frac(u / p) - 0.5)
    fv = np.abs(_frac(v / p) - 0.5)
    return np.clip((np.maximum(fu, fv) - 0.38) * 30, 0.0, 1.0)


def _tex_mosaic(rng, g, p, w, h):
    cell = max(2, round(p / 3))
    small = rng.random((h // cell + 1, w // cell + 1)).astype(np.float32)
    return np.repeat(np.repeat(small, cell, 0), cell, 1)[:h, :w]


def _tex_zigzag(rng, g, p, w, h):
    u, v = _rotated(g, rng.uniform(0, math.pi))
    tri = np.abs(_frac(v / p) - 0.5) * p
    return _square_wave((u + tri) * np.float32(2 * math.pi / p))


def _tex_plaid(rng, g, p, w, h):
    u, v = _rotated(g, rng.uniform(0, math.pi / 2))
    k = np.float32(2 * math.pi / p)
    a = np.sin(u * k) > 0.3
    b = np.sin(v * k) > 0.3
    return a.astype(np.float32) * 0.5 + b.astype(np.float32) * 0.5


def _tex_marble(rng, g, p, w, h):
    u, _ = _rotated(g, rng.uniform(0, math.pi))
    n = _smooth_noise(rng, w, h, p * 1.5)
    return 0.5 + 0.5 * np.sin((u / p + 3.0 * n) * np.float32(2 * math.pi))


def _tex_veins(rng, g, p, w, h):
    n = _smooth_noise(rng, w, h, p * 0.8)
    return np.clip(1.0 - np.abs(n - 0.5) * 12, 0.0, 1.0)


def _tex_hatch(rng, g, p, w, h):
    u, v = _rotated(g, rng.uniform(0, math.pi / 2) + math.pi / 4)
    k = np.float32(2 * math.pi / (p * 0.6))
    return np.maximum(np.sin(u * k), np.sin((u * 0.5 + v * 0.866) * k)) > 0.6


def _tex_sunburst(rng, g, p, w, h):
    xs, ys = g
    ang = np.arctan2(ys - rng.uniform(0, h), xs - rng.uniform(0, w))
    return _square_wave(ang * np.float32(rng.integers(10, 18)) + rng.uniform(0, 2 * math.pi))


def _tex_bricks(rng, g, p, w, h):
    u, v = _rotated(g, rng.choice([0.0, math.pi / 2]) + rng.uniform(-0.2, 0.2))
    rows = v / (p * 0.5)
    row = np.floor(rows)
    fu = _frac(u / p + 0.5 * (row - 2 * np.floor(row * 0.5)))
    fv = rows - row
    mortar = (fu < 0.08) | (fv < 0.16)
    return 1.0 - mortar.astype(np.float32)


def _tex_sawtooth(rng, g, p, w, h):
    u, _ = _rotated(g, rng.uniform(0, math.pi))
    return _frac(u / p)


_TEXTURES: tuple[Callable[..., np.ndarray], ...] = (
    _tex_stripes,
    _tex_checker,
    _tex_dots,
    _tex_blotches,
    _tex_waves,
    _tex_rings,
    _tex_grid,
    _tex_mosaic,
    _tex_zigzag,
    _tex_plaid,
    _tex_marble,
    _tex_veins,
    _tex_hatch,
    _tex_sunburst,
    _tex_bricks,
    _tex_sawtooth,
)
assert len(_TEXTURES) == len(CLASS_NAMES)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    h = (h % 1.0) * 6
    i, f = int(h) % 6, h - int(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array(
        [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32
    )


# Class-specific palettes: hues spread by a golden-ratio walk; one dark and one light colour,
# the second colour's hue offset differs per class.
_PALETTES: tuple[tuple[float, float], ...] = tuple(
    ((i * 0.618034) % 1.0, (0.5 if i % 2 else 0.12) * (1 if i % 4 < 2 else -1))
    for i in range(len(CLASS_NAMES))
)


def _ramp_image(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> Image.Image:
    """Map a field t (H, W) in [0, 1] to RGB by the ramp c0 -> c1 (colours in 0..1)."""
    t8 = (t * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)  # fields are within [0, 1]
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None]
    palette = np.clip((c0 + (c1 - c0) * ramp) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = Image.fromarray(t8, "L")
    img.putpalette(palette.tobytes())  # "L" + palette -> "P"
    return img.convert("RGB")


def _texture_image(
    tex_id: int, rng: np.random.Generator, w: int, h: int, period: float, grid: Grid
) -> Image.Image:
    """Class texture ``tex_id`` (pattern and class palette) as an RGB image."""
    t = np.broadcast_to(np.asarray(_TEXTURES[tex_id](rng, grid, period, w, h)), (h, w))
    hue, offset = _PALETTES[tex_id]
    hue += rng.uniform(-0.03, 0.03)
    dark = _hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.15, 0.35))
    light = _hsv(hue + offset, rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.0))
    if rng.random() < 0.5:
        dark, light = light, dark
    return _ramp_image(t, dark, light)


def _add_centred(img: Image.Image, delta: Image.Image) -> Image.Image:
    """img + (delta - 128), clipped: adds a zero-centred perturbation stored around 128."""
    return ImageChops.add(img, delta, scale=1.0, offset=-128)


def _background(rng: np.random.Generator, w: int, h: int, grid: Grid) -> Image.Image:
    """Muted, cluttered background: gradient and/or multi-scale colour noise, plus grain."""
    kind = rng.integers(3)
    base = _hsv(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.35, 0.8))
    if kind == 0:  # linear gradient between two muted colours, lightly mottled
        other = _hsv(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.3, 0.85))
        u, _ = _rotated(grid, rng.uniform(0, 2 * math.pi))
        u = np.broadcast_to(u, (h, w))
        lo, hi = float(u.min()), float(u.max())
        bg = _ramp_image((u - np.float32(lo)) * np.float32(1.0 / max(hi - lo, 1.0)), base, other)
        bg = _add_centred(bg, _noise_image(rng, w, h, min(w, h) / 3, 3, amp=0.15))
    else:  # clutter: colour value noise around the base colour (kind 2 adds a busy fine scale)
        cell = min(w, h) / rng.uniform(2, 5)
        bg = _noise_image(rng, w, h, cell, 3, centre=base, amp=rng.uniform(0.12, 0.24))
        if kind == 2:
            fine = _noise_image(rng, w, h, rng.uniform(6, 16), 3, amp=rng.uniform(0.08, 0.16))
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

    mask = _shape_mask(class_name, rng, w, h)
    period = min(w, h) * rng.uniform(0.06, 0.12)
    fg = _texture_image(tex_id, rng, w, h, period, grid)
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
