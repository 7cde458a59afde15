"""Batch-level augmentation of the RDED training recipe: strip shuffle, the crop after it,
and CutMix.

RDED (Sun et al., CVPR 2024, Sec. 3.3; ``validation/main.py`` and ``validation/utils.py``
``ShufflePatches``) trains on distilled images made of ``factor x factor`` patches: each
image's ``factor`` column strips are shuffled, then its ``factor`` row strips, and only
then comes RandomResizedCrop(scale ``(1/factor, 1)``) and the flip; the batch is then
CutMix'ed and the teacher relabels the mixed images online (``targets.kind: teacher`` at
temperature 20), so CutMix needs no label mixing here. The loader delivers whole images
when ``patch_shuffle`` > 1 (:attr:`~shardforge.train.config.TrainingConfig.
loader_crop_scale`); its flip commutes in distribution with the shuffle and the crop.
Randomness comes from generators seeded by ``(seed, rank, epoch)``, so a resumed run
repeats its epochs (the reference uses Python's unseeded ``random.shuffle``).
"""

from __future__ import annotations

import numpy as np
import torch


def strip_order(size: int, factor: int, perm: np.ndarray) -> np.ndarray:
    """Index order of ``size`` pixels cut into ``factor`` strips of ``size // factor``,
    reassembled in the order ``perm``; a remainder (``size`` not divisible) stays last in
    place (the reference drops it: a deliberate deviation that keeps the image size)."""
    step = size // factor
    head = np.concatenate([np.arange(k * step, (k + 1) * step) for k in perm])
    return np.concatenate([head, np.arange(factor * step, size)])


def shuffle_strips(images: torch.Tensor, factor: int, rng: np.random.Generator) -> torch.Tensor:
    """RDED's ``ShufflePatches`` on a batch (B x C x H x W): per image, its column strips in
    a random order, then its row strips in another. ``factor`` 1 returns the images."""
    if factor <= 1:
        return images
    b, _, h, w = images.shape
    out = torch.empty_like(images)
    for n in range(b):
        cols = torch.from_numpy(strip_order(w, factor, rng.permutation(factor)))
        rows = torch.from_numpy(strip_order(h, factor, rng.permutation(factor)))
        out[n] = images[n][:, :, cols.to(images.device)][:, rows.to(images.device), :]
    return out


def random_resized_crops(images: torch.Tensor, scale: tuple[float, float],
                         rng: np.random.Generator) -> torch.Tensor:
    """Per image a RandomResizedCrop (torchvision's box rule, area ``scale``, ratio 3/4-4/3)
    resized back to the batch's H x W (bilinear, antialias)."""
    import torchvision.transforms.v2.functional as F2

    from shardforge.formats.decode import random_resized_crop_box

    if tuple(scale) == (1.0, 1.0):
        return images
    b, _, h, w = images.shape
    out = torch.empty_like(images)
    for n in range(b):
        top, left, ch, cw = random_resized_crop_box(w, h, rng, tuple(scale))
        out[n] = F2.resized_crop(images[n], top, left, ch, cw, [h, w], antialias=True)
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
    """The configured batch augmentation: strip shuffle (``training.patch_shuffle``) and the
    random-resized crop after it (``crop_scale``), then CutMix (``training.cutmix`` = Beta
    alpha; 0 = off). Call :meth:`start_epoch` first."""

    def __init__(self, patch_shuffle: int, cutmix_alpha: float, seed: int, rank: int,
                 crop_scale: tuple[float, float] = (1.0, 1.0)) -> None:
        self.factor, self.alpha = patch_shuffle, cutmix_alpha
        self.crop_scale = tuple(crop_scale)
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
            images = shuffle_strips(images, self.factor, self.rng)
            images = random_resized_crops(images, self.crop_scale, self.rng)
        if self.alpha > 0:
            images = cutmix(images, self.alpha, self.rng)
        return images
