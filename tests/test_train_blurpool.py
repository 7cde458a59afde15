"""BlurPool insertion, models and optimizer parameter groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from shardforge.models.archs import build_model
from shardforge.models.blurpool import BlurPoolConv2d, apply_blurpool
from shardforge.train.optim import param_groups


def _strided_wide_convs(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, nn.Conv2d) and max(m.stride) > 1
               and m.in_channels >= 16)


@pytest.mark.parametrize("arch,expected", [("resnet18", 6), ("resnet50", 6), ("small_cnn", 3)])
def test_blurpool_wraps_every_strided_conv_with_16_plus_inputs(arch, expected):
    model = build_model(arch, 10)
    assert _strided_wide_convs(model) == expected
    # resnet: the stem conv has 3 inputs and stays; layer2-4 each have conv + downsample
    assert apply_blurpool(model) == expected
    assert sum(isinstance(m, BlurPoolConv2d) for m in model.modules()) == expected
    assert apply_blurpool(model) == 0          # idempotent


@pytest.mark.parametrize("arch", ["resnet18", "small_cnn"])
def test_blurpool_preserves_output_shapes(arch):
    torch.manual_seed(0)
    plain = build_model(arch, 7).eval()
    blurred = build_model(arch, 7, blurpool=True).eval()
    x = torch.randn(2, 3, 64, 64)
    assert blurred(x).shape == plain(x).shape == (2, 7)


def test_blur_filter_is_normalised_and_keeps_size():
    conv = nn.Conv2d(16, 8, 3, stride=2, padding=1)
    wrapped = BlurPoolConv2d(conv)
    assert wrapped.blur_filter.shape == (16, 1, 3, 3)
    assert torch.allclose(wrapped.blur_filter.sum(dim=(1, 2, 3)), torch.ones(16))
    x = torch.randn(1, 16, 10, 10)
    assert wrapped(x).shape == conv(x).shape == (1, 8, 5, 5)
    const = torch.ones(1, 16, 6, 6)   # a constant image stays constant inside (zero padding)
    blurred = nn.functional.conv2d(const, wrapped.blur_filter, padding=1, groups=16)
    assert torch.allclose(blurred[..., 1:-1, 1:-1], const[..., 1:-1, 1:-1])


def test_no_weight_decay_on_norm_parameters():
    model = build_model("resnet18", 10)
    norm, other = param_groups(model, weight_decay=5e-5)
    n_bn = sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d)
               for p in m.parameters())
    assert norm["weight_decay"] == 0.0 and other["weight_decay"] == 5e-5
    assert sum(p.numel() for p in norm["params"]) == n_bn
    assert sum(p.numel() for p in norm["params"] + other["params"]) == \
        sum(p.numel() for p in model.parameters())


def test_unknown_arch_is_an_error():
    with pytest.raises(ValueError, match="torchvision"):
        build_model("resnet9000", 10)
