"""The algorithm: ``255 - x`` on the chosen channels of each image; keys and labels kept.
Pure (numpy only), testable without Ray."""

from __future__ import annotations

import numpy as np

from shardforge.build.transform import Decoded


class InvertTransform:
    """Whole shard in, whole shard out (:class:`shardforge.build.transform.Transform`)."""

    def __init__(self, channels: tuple[int, ...] = (0, 1, 2)) -> None:
        self.channels = list(channels)

    def __call__(self, samples: list[Decoded], split: str) -> list[Decoded]:
        out = []
        for s in samples:
            pixels = s.pixels.copy()
            pixels[..., self.channels] = 255 - pixels[..., self.channels]
            out.append(Decoded(s.key, s.label, np.ascontiguousarray(pixels),
                               {"inverted": self.channels}))
        return out
