"""SGD with the ffcv-imagenet parameter groups: no weight decay on normalisation layers."""

from __future__ import annotations

import torch
from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def param_groups(model: nn.Module, weight_decay: float,
                 norm_weight_decay: float = 0.0) -> list[dict]:
    """Two SGD parameter groups: normalisation-layer parameters, then all others.

    Normalisation parameters (every BatchNorm/GroupNorm/LayerNorm weight and bias, found by
    module type) get ``norm_weight_decay`` (0: the recipe's ``bn_wd: 0``); the rest get
    ``weight_decay``. ffcv-imagenet selects by ``'bn' in name``, which misses the BatchNorm in
    torchvision's ``downsample`` branches; selecting by type covers those too.
    """
    norm_ids = {id(p) for m in model.modules() if isinstance(m, _NORM_TYPES)
                for p in m.parameters(recurse=False)}
    norm = [p for p in model.parameters() if id(p) in norm_ids]
    other = [p for p in model.parameters() if id(p) not in norm_ids]
    return [{"params": norm, "weight_decay": norm_weight_decay},
            {"params": other, "weight_decay": weight_decay}]


def make_sgd(model: nn.Module, weight_decay: float, momentum: float = 0.9,
             nesterov: bool = False) -> torch.optim.SGD:
    """SGD over :func:`param_groups`; the learning rate is set per iteration by the loop."""
    return torch.optim.SGD(param_groups(model, weight_decay), lr=0.0, momentum=momentum,
                           nesterov=nesterov)
