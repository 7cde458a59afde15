"""Style images for Stylized-ImageNet: listing, validation, preprocessing, the demo set.

Geirhos et al. (ICLR 2019, Appendix A.1) take paintings from Kaggle's Painter by Numbers,
keep RGB images of at least 224 px, and use each as a 224 x 224 style. Here (anchors:
Stylized-ImageNet) every style image is decoded to RGB, dropped with a reason when it is
corrupt or its short side is < ``size`` (224), else centre-cropped to a square and resized
to ``size`` x ``size`` (area interpolation).

A style set comes from one of:

* a directory (recursive; files with an image extension, sorted by relative path);
* a shardforge dataset (a catalog reference such as ``paintings`` or a dataset
  directory): every sample of every split, in index order;
* ``builtin:demo``: :data:`DEMO_STYLES` procedural "paintings" (coloured brush strokes on
  a mottled ground) generated on the fly, for the demo, which has no paintings. They are
  not paintings and share nothing with the demo's class textures.

:func:`load_style_set` validates every image once (on the calling process) and returns a
:class:`StyleSet` of references; workers read and preprocess the styles they need with
:func:`read_style`. A style's id is its position in the set.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from shardforge.formats.area import resize_area
from shardforge.formats.image import DEFAULT_MAX_PIXELS, RejectedImage, decode_rgb

STYLE_SIZE = 224  # Geirhos et al. 2019, Appendix A.1 (anchors: Stylized-ImageNet)
BUILTIN_DEMO = "builtin:demo"
DEMO_STYLES = 64
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class StyleSetError(ValueError):
    """A style location is unusable (missing, empty, or every image rejected)."""


@dataclass(frozen=True)
class StyleRef:
    """Where one accepted style image is: ``url`` read whole (``size`` < 0) or a byte range
    (a sample inside a dataset tar); ``sha256`` of those bytes. ``builtin:demo#I`` URLs are
    generated."""

    key: str
    url: str
    offset: int = 0
    size: int = -1
    sha256: str = ""


@dataclass(frozen=True)
class StyleSet:
    """Accepted styles (id = position), rejected ones with reasons, and an identity hash."""

    location: str
    size: int
    styles: tuple[StyleRef, ...]
    rejects: tuple[dict, ...]

    @property
    def sha256(self) -> str:
        """sha256 over the preprocessing size and every accepted style's key and bytes' sha256:
        the same images in the same order give the same hash wherever they are stored."""
        body = json.dumps({"size": self.size, "styles": [[s.key, s.sha256] for s in self.styles]},
                          separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()

    def describe(self) -> dict:
        """JSON-able listing: location, size, sha256, accepted keys, rejects."""
        return {"location": self.location, "size": self.size, "sha256": self.sha256,
                "styles": [s.key for s in self.styles], "rejects": list(self.rejects)}


def preprocess_style(data: bytes, size: int = STYLE_SIZE,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Style image bytes -> uint8 (size, size, 3): RGB, centre square crop, area resize.

    Raises :class:`RejectedImage` with the reason when the bytes do not decode or the short
    side is below ``size``.
    """
    pixels, w, h = decode_rgb(data, max_pixels)
    if min(w, h) < size:
        raise RejectedImage(f"{w}x{h} px is smaller than {size} px on the short side")
    side = min(w, h)
    top, left = (h - side) // 2, (w - side) // 2
    square = pixels[top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    return resize_area(square, (size, size))


def read_style(ref: StyleRef, size: int = STYLE_SIZE) -> np.ndarray:
    """The preprocessed pixels of one accepted style (reads its bytes again)."""
    return preprocess_style(_read_bytes(ref), size)


def style_image(location: str, key: str, size: int = STYLE_SIZE) -> np.ndarray:
    """The preprocessed pixels of the style ``key`` of the style set at ``location`` (what
    a stylized sample's ``style_key`` names). Raises KeyError naming the location when
    it holds no such style, :class:`StyleSetError` when the location does not resolve."""
    for ref in _candidates(location):
        if ref.key == key:
            return read_style(ref, size)
    raise KeyError(f"styles {location!r} hold no style {key!r}")


def _read_bytes(ref: StyleRef) -> bytes:
    if ref.url.startswith(BUILTIN_DEMO + "#"):
        return demo_style_png(int(ref.url.rsplit("#", 1)[1]))
    from shardforge.storage import resolve

    loc = resolve(ref.url)
    return loc.read_bytes() if ref.size < 0 else loc.read_range(ref.offset, ref.size)


def load_style_set(location: str, size: int = STYLE_SIZE,
                   threads: int = 8) -> StyleSet:
    """List and validate the styles at ``location`` (see the module docstring).

    Raises :class:`StyleSetError` when the location does not resolve, holds no image, or
    every image was rejected.
    """
    candidates = _candidates(location)
    if not candidates:
        raise StyleSetError(f"styles {location!r}: no image found (expected files with "
                            f"extensions {', '.join(IMAGE_EXTENSIONS)}, a dataset, or "
                            f"{BUILTIN_DEMO})")

    def check(ref: StyleRef) -> StyleRef | dict:
        try:
            data = _read_bytes(ref)
            preprocess_style(data, size)
        except RejectedImage as exc:
            return {"style": ref.key, "origin": ref.url, "reason": str(exc)}
        except OSError as exc:
            return {"style": ref.key, "origin": ref.url, "reason": f"unreadable: {exc}"}
        except Exception as exc:   # one style image must not end the job: a reject
            return {"style": ref.key, "origin": ref.url,
                    "reason": f"{type(exc).__name__}: {exc}"}
        return StyleRef(ref.key, ref.url, ref.offset, ref.size, hashlib.sha256(data).hexdigest())

    with ThreadPoolExecutor(max(1, threads)) as pool:
        checked = list(pool.map(check, candidates))
    styles = tuple(r for r in checked if isinstance(r, StyleRef))
    rejects = tuple(r for r in checked if isinstance(r, dict))
    if not styles:
        reasons = "; ".join(f"{r['style']}: {r['reason']}" for r in rejects[:3])
        raise StyleSetError(f"styles {location!r}: all {len(rejects)} images were rejected "
                            f"({reasons}); style images need a short side >= {size} px")
    return StyleSet(location, size, styles, rejects)


def _is_image_dir(location: str) -> bool:
    """A local directory of style images (not a dataset directory)."""
    return "://" not in location and os.path.isdir(location) and not os.path.isfile(
        os.path.join(location, "index.parquet"))


def style_set_input(location: str):
    """The catalog input (:mod:`shardforge.build.inputs`) of the style set at
    ``location``, computed without reading an image: a directory's image files' paths,
    sizes and mtimes, a dataset's ``summary.json``; None for the procedural builtin set."""
    from shardforge.build.inputs import dataset_input, tree_input

    if location == BUILTIN_DEMO:
        return None
    if _is_image_dir(location):
        return tree_input(location, IMAGE_EXTENSIONS)
    return dataset_input(location)


def _candidates(location: str) -> list[StyleRef]:
    if location == BUILTIN_DEMO:
        return [StyleRef(f"demo-style-{i:03d}", f"{BUILTIN_DEMO}#{i}") for i in range(DEMO_STYLES)]
    if _is_image_dir(location):
        root = os.path.abspath(location)
        found = []
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    path = os.path.join(dirpath, name)
                    found.append(StyleRef(os.path.relpath(path, root), path))
        return sorted(found, key=lambda r: r.key)
    return _dataset_candidates(location)


def _dataset_candidates(location: str) -> list[StyleRef]:
    from shardforge.layout.dataset import DatasetNotFoundError, dataset_location, open_dataset

    try:
        ref = open_dataset(dataset_location(location))
    except DatasetNotFoundError as exc:
        raise StyleSetError(f"styles {location!r} is neither a directory of images, a "
                            f"dataset nor {BUILTIN_DEMO}: {exc}") from exc
    found = []
    for split, index in sorted(ref.splits.items()):
        for r in range(len(index)):
            url = index.shard_urls[int(index.shard[r])]
            found.append(StyleRef(f"{split}/{index.key[r]}", url, int(index.offset[r]),
                                  int(index.size[r])))
    return found


# --------------------------------------------------------------------------------------------
# builtin:demo -- procedural brush-stroke "paintings" (deterministic per index)
# --------------------------------------------------------------------------------------------

def render_demo_style(index: int, seed: int = 0) -> Image.Image:
    """Procedural style image ``index``: a mottled ground in a random palette with a few
    hundred brush strokes following a smooth flow field; 240..320 px per side."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_000_003, index]))
    w, h = (int(v) for v in rng.integers(240, 321, size=2))
    palette = rng.integers(0, 256, size=(int(rng.integers(3, 7)), 3))
    cell = rng.uniform(24, 96)
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    ground = palette[rng.integers(len(palette), size=(gh, gw))].astype(np.uint8)
    img = Image.fromarray(ground).resize((w, h), Image.BICUBIC)
    flow = rng.uniform(0, 2 * math.pi, size=(gh, gw))
    draw = ImageDraw.Draw(img)
    width_lo, width_hi = sorted(rng.uniform(1.5, 9.0, size=2))
    length = rng.uniform(8, 40)
    for _ in range(int(rng.integers(150, 450))):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        theta = flow[int(y / cell), int(x / cell)] + rng.normal(0, 0.3)
        dx, dy = math.cos(theta) * length / 2, math.sin(theta) * length / 2
        colour = np.clip(palette[rng.integers(len(palette))] + rng.normal(0, 25, 3), 0, 255)
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=tuple(int(c) for c in colour),
                  width=max(1, int(rng.uniform(width_lo, width_hi + 1e-6))))
    return img.filter(ImageFilter.SMOOTH)


def demo_style_png(index: int) -> bytes:
    """PNG bytes of :func:`render_demo_style` ``index``."""
    buf = io.BytesIO()
    render_demo_style(index).save(buf, format="PNG")
    return buf.getvalue()
