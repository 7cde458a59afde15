"""Model construction: torchvision classifiers (random init) and a small CNN for CPU runs."""

from __future__ import annotations

from torch import nn

from shardforge.models.blurpool import apply_blurpool

SMALL_CNN = "small_cnn"


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """A 7-conv VGG-style network (widths w, 2w, 4w, 8w; three stride-2 stages), global pooling.

    About 0.2 GMAC per 64 px image at ``width=32``: trains on the demo data on a CPU in minutes.
    """

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2), _block(4 * w, 8 * w, 2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


TIMM_PREFIX = "timm:"


def _timm_model(name: str, num_classes: int) -> nn.Module:
    """``timm.create_model(name)`` randomly initialised (weights come from a local file)."""
    try:
        import timm
    except ImportError:
        raise ValueError(f"model {TIMM_PREFIX}{name} needs timm: pip install "
                         "'shardforge[timm]'") from None
    if not timm.is_model(name):
        raise ValueError(f"{name!r} is not a timm model name; see timm.list_models()")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def build_model(arch: str, num_classes: int, blurpool: bool = False, width: int = 32) -> nn.Module:
    """A randomly initialised classifier with ``num_classes`` outputs.

    ``arch`` is ``small_cnn``, any torchvision classification model name (``resnet18``,
    ``resnet50``, ...; built with ``weights=None``) or ``timm:NAME`` (a timm model, the
    ``timm`` extra). ``blurpool`` wraps strided convs with
    :class:`~shardforge.models.blurpool.BlurPoolConv2d` as ffcv-imagenet does. ``width`` is
    the small CNN's base width (ignored for torchvision models). Raises ValueError for an
    unknown ``arch``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if arch == SMALL_CNN:
        model: nn.Module = SmallCNN(num_classes, width)
    elif arch.startswith(TIMM_PREFIX):
        model = _timm_model(arch[len(TIMM_PREFIX):], num_classes)
    else:
        import torchvision

        if arch not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(f"model.arch {arch!r} is neither {SMALL_CNN!r} nor a torchvision "
                             "classification model; use e.g. resnet18 or resnet50")
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if blurpool:
        apply_blurpool(model)
    return model
