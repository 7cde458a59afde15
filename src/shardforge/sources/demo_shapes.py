"""The demo dataset's shape classes (:mod:`shardforge.sources.demo`): each shape is a list of
(polygon, fill) in unit coordinates, drawn as an anti-aliased mask."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

MAX_ROTATION_DEG = 30.0  # shapes are rotated uniformly in [-30, 30] degrees (mostly upright)
_SUPERSAMPLE = 2  # shape masks are drawn at 2x and box-filtered down (anti-aliasing)

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


def shape_mask(name: str, rng: np.random.Generator, w: int, h: int) -> Image.Image:
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
