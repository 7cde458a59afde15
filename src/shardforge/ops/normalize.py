"""ImageNet normalisation, the one copy: the mean and std every model here was trained with
(torchvision's, on the 0-255 scale) and the function that applies them to a batch."""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406]) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225]) * 255


def normalize_images(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 (or float) B x 3 x H x W images -> float32, minus ImageNet mean, over std (0-255 scale).

    Returns a new tensor on the images' device, channels-last in memory if asked.
    """
    mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32, device=images.device)
    std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32, device=images.device)
    out = (images.float() - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return out.contiguous(memory_format=fmt)
