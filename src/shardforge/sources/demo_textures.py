"""The demo dataset's class textures (:mod:`shardforge.sources.demo`): each pattern is a scalar
field in [0, 1] mapped to RGB by its class palette."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

# --------------------------------------------------------------------------------------------
# Textures: each returns a scalar field t (H, W) in [0, 1]; a palette maps it to RGB.
# --------------------------------------------------------------------------------------------

Grid = tuple[np.ndarray, np.ndarray]  # xs (1, W), ys (H, 1), float32 pixel coordinates


def rotated(g: Grid, theta: float) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = g
    c, s = np.float32(math.cos(theta)), np.float32(math.sin(theta))
    return xs * c + ys * s, ys * c - xs * s


def _frac(v: np.ndarray) -> np.ndarray:
    return v - np.floor(v)


def _square_wave(v: np.ndarray, sharp: float = 3.0) -> np.ndarray:
    return np.clip(0.5 + sharp * np.sin(v), 0.0, 1.0)


def noise_image(
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
    return np.asarray(noise_image(rng, w, h, cell), dtype=np.float32) * np.float32(1.0 / 255.0)


def _tex_stripes(rng, g, p, w, h):
    u, _ = rotated(g, rng.uniform(0, math.pi))
    return _square_wave(u * (2 * math.pi / p))


def _tex_checker(rng, g, p, w, h):
    u, v = rotated(g, rng.uniform(0, math.pi / 2))
    k = np.float32(2 * math.pi / p)
    return _square_wave(np.sin(u * k) * np.sin(v * k) * 4, sharp=1.0)


def _tex_dots(rng, g, p, w, h):
    u, v = rotated(g, rng.uniform(0, math.pi / 2))
    fu = _frac(u / p) - 0.5
    fv = _frac(v / p) - 0.5
    r = rng.uniform(0.25, 0.35)
    return np.clip((r * r - (fu * fu + fv * fv)) * 40 + 0.5, 0.0, 1.0)


def _tex_blotches(rng, g, p, w, h):
    n = _smooth_noise(rng, w, h, p * 0.8)
    return np.clip((n - 0.5) * 6 + 0.5, 0.0, 1.0)


def _tex_waves(rng, g, p, w, h):
    u, v = rotated(g, rng.uniform(0, math.pi))
    amp, k2 = p * rng.uniform(0.3, 0.5), 2 * math.pi / (p * rng.uniform(1.5, 2.5))
    return _square_wave((u + amp * np.sin(v * np.float32(k2))) * np.float32(2 * math.pi / p))


def _tex_rings(rng, g, p, w, h):
    xs, ys = g
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    r = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    return _square_wave(r * np.float32(2 * math.pi / p))


def _tex_grid(rng, g, p, w, h):
    u, v = rotated(g, rng.uniform(0, math.pi / 2))
    fu = np.abs(_frac(u / p) - 0.5)
    fv = np.abs(_frac(v / p) - 0.5)
    return np.clip((np.maximum(fu, fv) - 0.38) * 30, 0.0, 1.0)


def _tex_mosaic(rng, g, p, w, h):
    cell = max(2, round(p / 3))
    small = rng.random((h // cell + 1, w // cell + 1)).astype(np.float32)
    return np.repeat(np.repeat(small, cell, 0), cell, 1)[:h, :w]


def _tex_zigzag(rng, g, p, w, h):
    u, v = rotated(g, rng.uniform(0, math.pi))
    tri = np.abs(_frac(v / p) - 0.5) * p
    return _square_wave((u + tri) * np.float32(2 * math.pi / p))


def _tex_plaid(rng, g, p, w, h):
    u, v = rotated(g, rng.uniform(0, math.pi / 2))
    k = np.float32(2 * math.pi / p)
    a = np.sin(u * k) > 0.3
    b = np.sin(v * k) > 0.3
    return a.astype(np.float32) * 0.5 + b.astype(np.float32) * 0.5


def _tex_marble(rng, g, p, w, h):
    u, _ = rotated(g, rng.uniform(0, math.pi))
    n = _smooth_noise(rng, w, h, p * 1.5)
    return 0.5 + 0.5 * np.sin((u / p + 3.0 * n) * np.float32(2 * math.pi))


def _tex_veins(rng, g, p, w, h):
    n = _smooth_noise(rng, w, h, p * 0.8)
    return np.clip(1.0 - np.abs(n - 0.5) * 12, 0.0, 1.0)


def _tex_hatch(rng, g, p, w, h):
    u, v = rotated(g, rng.uniform(0, math.pi / 2) + math.pi / 4)
    k = np.float32(2 * math.pi / (p * 0.6))
    return np.maximum(np.sin(u * k), np.sin((u * 0.5 + v * 0.866) * k)) > 0.6


def _tex_sunburst(rng, g, p, w, h):
    xs, ys = g
    ang = np.arctan2(ys - rng.uniform(0, h), xs - rng.uniform(0, w))
    return _square_wave(ang * np.float32(rng.integers(10, 18)) + rng.uniform(0, 2 * math.pi))


def _tex_bricks(rng, g, p, w, h):
    u, v = rotated(g, rng.choice([0.0, math.pi / 2]) + rng.uniform(-0.2, 0.2))
    rows = v / (p * 0.5)
    row = np.floor(rows)
    fu = _frac(u / p + 0.5 * (row - 2 * np.floor(row * 0.5)))
    fv = rows - row
    mortar = (fu < 0.08) | (fv < 0.16)
    return 1.0 - mortar.astype(np.float32)


def _tex_sawtooth(rng, g, p, w, h):
    u, _ = rotated(g, rng.uniform(0, math.pi))
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

#: One texture per shape class.
NUM_TEXTURES = len(_TEXTURES)

def hsv(h: float, s: float, v: float) -> np.ndarray:
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
    for i in range(len(_TEXTURES))
)


def ramp_image(t: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> Image.Image:
    """Map a field t (H, W) in [0, 1] to RGB by the ramp c0 -> c1 (colours in 0..1)."""
    t8 = (t * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)  # fields are within [0, 1]
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[:, None]
    palette = np.clip((c0 + (c1 - c0) * ramp) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    img = Image.fromarray(t8, "L")
    img.putpalette(palette.tobytes())  # "L" + palette -> "P"
    return img.convert("RGB")


def texture_image(
    tex_id: int, rng: np.random.Generator, w: int, h: int, period: float, grid: Grid
) -> Image.Image:
    """Class texture ``tex_id`` (pattern and class palette) as an RGB image."""
    t = np.broadcast_to(np.asarray(_TEXTURES[tex_id](rng, grid, period, w, h)), (h, w))
    hue, offset = _PALETTES[tex_id]
    hue += rng.uniform(-0.03, 0.03)
    dark = hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.15, 0.35))
    light = hsv(hue + offset, rng.uniform(0.5, 0.9), rng.uniform(0.8, 1.0))
    if rng.random() < 0.5:
        dark, light = light, dark
    return ramp_image(t, dark, light)
