"""A natural-photograph JPEG corpus for the benchmarks, made from scikit-image's sample photos.

No dataset can be downloaded on the benchmark machines, so the corpus is cut from the
photographs scikit-image ships (astronaut, cat, coffee, rocket, the stereo motorcycle
pair, Hubble deep field, immunohistochemistry, retina; grey ones as RGB): each image is a
seeded random crop (a fraction of the photo's area, aspect 3:4..4:3), flipped half of the
time, resized (Lanczos) so its longest side lies in ``[min_side, max_side]`` and saved as
a baseline JPEG at ``quality``: ImageNet-like sizes with natural-image statistics, unlike
the procedural demo images.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left",
                  "motorcycle_right", "hubble_deep_field", "immunohistochemistry", "retina",
                  "camera", "moon", "coins", "brick", "grass", "gravel", "cell")


def sample_photos() -> tuple[list[np.ndarray], str]:
    """scikit-image's sample photos as RGB uint8 arrays, and a line saying where they are from.

    Without scikit-image (the ``bench`` extra) the photos are PIL-made gradients with
    Gaussian noise, and the line says so.
    """
    try:
        import skimage.data as data
    except ImportError:
        rng = np.random.default_rng(0)
        out = []
        for k in range(16):
            y, x = np.mgrid[0:480, 0:640]
            base = np.stack([(x * (k + 1) % 256), (y * 3 % 256), ((x + y) // 3 % 256)], -1)
            out.append(np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8))
        return out, "PIL-made images (gradients + Gaussian noise; scikit-image not installed)"
    from importlib.metadata import version

    out = []
    for name in SKIMAGE_PHOTOS:
        if name.startswith("motorcycle_"):
            img = np.asarray(data.stereo_motorcycle()[0 if name.endswith("left") else 1])
        else:
            img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return out, (f"scikit-image {version('scikit-image')} sample photos "
                 f"({', '.join(SKIMAGE_PHOTOS)}; grey ones as RGB)")


@dataclass(frozen=True)
class PhotoCorpus:
    """Parameters of a corpus; equal parameters give byte-identical files."""

    images: int = 2000
    classes: int = 10
    min_side: int = 350
    max_side: int = 650
    quality: int = 90
    min_area: float = 0.35
    seed: int = 0

    @property
    def tag(self) -> str:
        return (f"photos-n{self.images}-c{self.classes}-s{self.min_side}-{self.max_side}"
                f"-q{self.quality}-a{self.min_area}-seed{self.seed}")

    def files(self, root: Path) -> list[tuple[str, int]]:
        """(path, label) of every image, in index order (class = index mod classes)."""
        return [(str(root / f"c{i % self.classes:03d}" /
                     f"c{i % self.classes:03d}_{i // self.classes:06d}.JPEG"),
                 i % self.classes) for i in range(self.images)]


_PHOTOS: list[np.ndarray] = []


def _make(job: tuple) -> None:
    spec, index, path = job
    if not _PHOTOS:
        _PHOTOS.extend(sample_photos()[0])
    rng = np.random.default_rng([spec.seed, index])
    img = _PHOTOS[int(rng.integers(len(_PHOTOS)))]
    h, w = img.shape[:2]
    area = rng.uniform(spec.min_area, 1.0) * h * w
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    ch = int(min(h, round((area / aspect) ** 0.5)))
    cw = int(min(w, round((area * aspect) ** 0.5)))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = Image.fromarray(img[y0:y0 + ch, x0:x0 + cw])
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    side = int(rng.integers(spec.min_side, spec.max_side + 1))
    scale = side / max(crop.size)
    crop = crop.resize((max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))),
                       Image.LANCZOS)
    tmp = f"{path}.tmp{os.getpid()}"
    crop.save(tmp, format="JPEG", quality=spec.quality)
    os.replace(tmp, path)


def ensure_corpus(spec: PhotoCorpus, work: Path, workers: int = 2
                  ) -> tuple[Path, list[tuple[str, int]], dict]:
    """Write the corpus once under ``work/data/TAG`` (cached by parameters); list it.

    Returns the class-folder root, ``(path, label)`` per image and its statistics
    (sizes, bytes, where the photos come from).
    """
    root = Path(work) / "data" / spec.tag
    marker = root.parent / f"{spec.tag}.done.json"
    files = spec.files(root)
    if not marker.exists():
        for c in range(spec.classes):
            (root / f"c{c:03d}").mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        print(f"writing {spec.images} natural-photo JPEGs in {root} ...", file=sys.stderr)
        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_make, [(spec, i, p) for i, (p, _) in enumerate(files)],
                                         chunksize=32):
                pass
        print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        marker.write_text(json.dumps(asdict(spec)))
    sizes = np.array([Image.open(p).size for p, _ in files])
    nbytes = np.array([os.path.getsize(p) for p, _ in files])
    stats = {"images": len(files), "classes": spec.classes, "kind": "photos",
             "what": sample_photos()[1], "mean_w": float(sizes[:, 0].mean()),
             "mean_h": float(sizes[:, 1].mean()), "min_side": int(sizes.min()),
             "max_side": int(sizes.max()), "mean_kb": float(nbytes.mean() / 1024),
             "total_mb": float(nbytes.sum() / 2**20), "long_sides": sizes.max(axis=1).tolist()}
    return root, files, stats
