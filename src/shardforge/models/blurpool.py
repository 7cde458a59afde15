"""BlurPool (ffcv-imagenet): a fixed [1,2,1] x [1,2,1] / 16 depthwise blur before strided convs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BlurPoolConv2d(nn.Module):
    """Wraps a strided ``nn.Conv2d``: blur each input channel (3x3, stride 1, pad 1), then convolve.

    The blur keeps the input's shape, so the wrapped conv's output shape is unchanged.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0
        self.conv = conv
        self.register_buffer("blur_filter", kernel.expand(conv.in_channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blurred = F.conv2d(x, self.blur_filter.to(x.dtype), stride=1, padding=1,
                           groups=self.conv.in_channels)
        return self.conv(blurred)


def apply_blurpool(module: nn.Module, min_channels: int = 16) -> int:
    """Wrap, in place, every ``nn.Conv2d`` with a stride > 1 and >= ``min_channels`` inputs.

    Returns the number of convolutions wrapped. Idempotent: already wrapped convs are skipped.
    """
    count = 0
    for name, child in module.named_children():
        if isinstance(child, BlurPoolConv2d):
            continue
        if (isinstance(child, nn.Conv2d) and max(child.stride) > 1
                and child.in_channels >= min_channels):
            setattr(module, name, BlurPoolConv2d(child))
            count += 1
        else:
            count += apply_blurpool(child, min_channels)
    return count
