"""The ``stylize`` variant: Stylized-ImageNet (Geirhos et al., ICLR 2019) over any parent.

Every content image of the transformed splits (default ``train``) is ``Resize(resize)`` ->
``CenterCrop(crop)`` (256 -> 224, Sec. 2.3 / anchors), gets one style drawn uniformly with
replacement from the style set by a seeded RNG, and is re-rendered:

* ``method: adain`` (the paper's): AdaIN with the canonical VGG-19/decoder weights
  (:mod:`shardforge.variants.stylize.adain`), ``alpha`` 1.0, batched, AMP on GPU; shards run on a
  pool of actors that load the network once (GPU actors when ``num_gpus`` > 0);
* ``method: fourier`` (NOT the paper's; needs no weights): the content's Fourier phase with
  the style's amplitude (:mod:`shardforge.variants.stylize.fourier`), CPU tasks.

The style of a sample is drawn from ``SeedSequence([seed, sha256(key)])``, so it depends
only on the seed and the sample's key (not on shards or workers). Each output sample's
``.json`` gets ``style_id`` (position in the style set) and ``style_key``. Outputs are
lossless (PNG / raw) unless ``jpeg_quality`` is set. The parameters recorded in the
catalog include the style set's sha256 and, for AdaIN, the weight files' sha256.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from shardforge.build.transform import Decoded
from shardforge.formats.image import resize_center_crop
from shardforge.variants.stylize.styles import (
    STYLE_SIZE,
    StyleRef,
    read_style,
)

METHODS = ("adain", "fourier")
RESIZE, CROP = 256, 224  # Geirhos et al. 2019 content preprocessing (anchors)
STYLE_CACHE = 4096       # styles (pixels or AdaIN statistics) kept per worker


@dataclass(frozen=True)
class StylizeConfig:
    """What decides the output bytes (plus where the weights are and how to batch)."""

    method: str = "adain"
    alpha: float = 1.0
    seed: int = 0
    resize: int = RESIZE
    crop: int = CROP
    style_size: int = STYLE_SIZE
    weights: str | None = None
    amp: str = "fp16"
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 8 <= self.crop <= self.resize:
            raise ValueError(f"need 8 <= crop ({self.crop}) <= resize ({self.resize})")
        if self.method == "adain" and not self.weights:
            raise ValueError("method adain needs weights (--weights DIR, or the card's "
                             "weights: DIR) holding vgg_normalised.pth and decoder.pth (they "
                             "cannot be downloaded here); or use method fourier, which needs "
                             "none")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def assign_style(seed: int, key: str, num_styles: int) -> int:
    """Style id of sample ``key``: uniform over ``num_styles`` (with replacement across
    samples) from ``SeedSequence([seed, sha256(key)])``."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big")
    return int(np.random.default_rng(np.random.SeedSequence([seed, digest]))
               .integers(num_styles))


class StylizeTransform:
    """The variant's transform: loads the network (AdaIN) once, caches styles per worker."""

    def __init__(self, config: StylizeConfig, styles: tuple[StyleRef, ...]) -> None:
        self.config = config
        self.styles = styles
        self.net = None
        self._cache: OrderedDict[int, object] = OrderedDict()
        if config.method == "adain":
            import torch

            from shardforge.variants.stylize.adain import load_adain

            assert config.weights is not None
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            self.net = load_adain(config.weights).to(device)

    def __call__(self, samples: list[Decoded], split: str) -> list[Decoded]:
        c = self.config
        contents = [resize_center_crop(s.pixels, c.resize, c.crop) for s in samples]
        ids = [assign_style(c.seed, s.key, len(self.styles)) for s in samples]
        if c.method == "fourier":
            outs = [self._fourier(x, i) for x, i in zip(contents, ids, strict=True)]
        else:
            outs = self._adain(np.stack(contents), ids) if contents else []
        return [Decoded(s.key, s.label, out, {"style_id": i, "style_key": self.styles[i].key})
                for s, out, i in zip(samples, outs, ids, strict=True)]

    def _cached(self, style_id: int, make):
        if style_id in self._cache:
            self._cache.move_to_end(style_id)
            return self._cache[style_id]
        value = make()
        self._cache[style_id] = value
        if len(self._cache) > STYLE_CACHE:
            self._cache.popitem(last=False)
        return value

    def _fourier(self, content: np.ndarray, style_id: int) -> np.ndarray:
        from shardforge.formats.area import resize_area
        from shardforge.variants.stylize.fourier import fourier_stylize

        h, w = content.shape[:2]

        def make() -> np.ndarray:
            style = read_style(self.styles[style_id], self.config.style_size)
            if style.shape[:2] != (h, w):
                style = resize_area(style, (w, h))
            return style

        return fourier_stylize(content, self._cached(style_id, make), self.config.alpha)

    def _adain(self, contents: np.ndarray, ids: list[int]) -> list[np.ndarray]:
        import torch

        from shardforge.variants.stylize.adain import style_stats_batch, stylize_batch

        c, net = self.config, self.net
        stats: dict[int, tuple] = {i: self._cache[i] for i in set(ids) if i in self._cache}
        missing = sorted(set(ids) - set(stats))
        for start in range(0, len(missing), c.batch_size):
            chunk = missing[start:start + c.batch_size]
            pixels = np.stack([read_style(self.styles[i], c.style_size) for i in chunk])
            mean, std = style_stats_batch(net, pixels, c.amp)
            for j, i in enumerate(chunk):
                stats[i] = (mean[j:j + 1], std[j:j + 1])
        for i in sorted(stats):
            self._cached(i, lambda i=i: stats[i])
        outs: list[np.ndarray] = []
        for start in range(0, len(ids), c.batch_size):
            chunk = ids[start:start + c.batch_size]
            mean = torch.cat([stats[i][0] for i in chunk])
            std = torch.cat([stats[i][1] for i in chunk])
            out = stylize_batch(net, contents[start:start + len(chunk)], mean, std, c.alpha,
                                c.amp)
            outs.extend(out)
        return outs
