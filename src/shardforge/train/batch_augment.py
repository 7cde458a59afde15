"""Batch-level augmentation of the RDED training recipe: patch-grid shuffle and CutMix.

RDED (Sun et al., CVPR 2024, Sec. 3.3 and its training code) trains on distilled images
made of ``factor x factor`` patches: each image's patch grid is shuffled, then the batch is
CutMix'ed, and the teacher relabels the mixed images online (``targets.kind: teacher`` at
temperature 20), so CutMix needs no label mixing here.

The shuffle runs on the batch tensor after the loader's RandomResizedCrop and flip (the
paper shuffles before the crop; with crops of at least ``1/factor`` of the area, as the
recipe's ``training.crop_scale``, most of each patch survives either way). Randomness comes
from generators seeded by ``(seed, rank, epoch)``, so a resumed run repeats its epochs.
"""

from __future__ import annotations

import numpy as np
import torch


def shuffle_patches(images: torch.Tensor, factor: int, rng: np.random.Generator) -> torch.Tensor:
    """Each image's ``factor x factor`` grid of cells permuted at random (B x C x H x W).

    Cells are ``H // factor x W // factor``; a remainder row/column (H or W not divisible
    by ``factor``) stays in place. ``factor`` 1 returns the images unchanged."""
    if factor <= 1:
        return images
    b, c, h, w = images.shape
    ph, pw = h // factor, w // factor
    grid = images[:, :, :factor * ph, :factor * pw]
    cells = (grid.reshape(b, c, factor, ph, factor, pw).permute(0, 2, 4, 1, 3, 5)
             .reshape(b, factor * factor, c, ph, pw))
    order = torch.from_numpy(np.argsort(rng.random((b, factor * factor)), axis=1))
    cells = cells[torch.arange(b)[:, None], order.to(images.device)]
    shuffled = (cells.reshape(b, factor, factor, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
                .reshape(b, c, factor * ph, factor * pw))
    out = images.clone()
    out[:, :, :factor * ph, :factor * pw] = shuffled
    return out


def cutmix_box(h: int, w: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The CutMix box ``(y0, y1, x0, x1)``: area about ``1 - lam`` of the image, centred at
    a uniform random point and clipped to the image (Yun et al., ICCV 2019)."""
    cut = np.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    return (max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0),
            min(cx + cw // 2, w))


def cutmix(images: torch.Tensor, alpha: float, rng: np.random.Generator) -> torch.Tensor:
    """CutMix of a batch with a random permutation of itself: ``lam ~ Beta(alpha, alpha)``,
    one box per batch pasted from the permuted images. Labels are not mixed (the online
    teacher labels the mixed images)."""
    b, _, h, w = images.shape
    y0, y1, x0, x1 = cutmix_box(h, w, float(rng.beta(alpha, alpha)), rng)
    perm = torch.from_numpy(rng.permutation(b)).to(images.device)
    out = images.clone()
    out[:, :, y0:y1, x0:x1] = images[perm, :, y0:y1, x0:x1]
    return out


class BatchAugment:
    """The configured batch augmentation: patch shuffle (``training.patch_shuffle``) then
    CutMix (``training.cutmix`` = Beta alpha; 0 = off). Call :meth:`start_epoch` first."""

    def __init__(self, patch_shuffle: int, cutmix_alpha: float, seed: int, rank: int) -> None:
        self.factor, self.alpha = patch_shuffle, cutmix_alpha
        self.seed, self.rank = seed, rank
        self.rng = np.random.default_rng([seed, rank, 0])

    @property
    def active(self) -> bool:
        return self.factor > 1 or self.alpha > 0

    def start_epoch(self, epoch: int) -> None:
        """Reseed from ``(seed, rank, epoch)``: a resumed epoch gets the same draws."""
        self.rng = np.random.default_rng([self.seed, self.rank, epoch])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.factor > 1:
            images = shuffle_patches(images, self.factor, self.rng)
        if self.alpha > 0:
            images = cutmix(images, self.alpha, self.rng)
        return images
