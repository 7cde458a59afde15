"""Optimizers: SGD with the ffcv-imagenet parameter groups (no weight decay on normalisation
layers); AdamW with RDED's (weight decay on >= 2-dimensional weights only)."""

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


#: ``optim.name`` values.
OPTIMIZERS = ("sgd", "adamw")


def rded_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """RDED's AdamW groups (``validation/utils.py`` ``get_parameters``): parameters whose
    name contains ``weight`` and that have >= 2 dimensions (conv and linear weights) get
    ``weight_decay``; the rest (biases, normalisation weights) get 0."""
    decay = [p for n, p in model.named_parameters() if "weight" in n and p.ndim >= 2]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": rest, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, name: str, weight_decay: float, momentum: float = 0.9,
                   nesterov: bool = False) -> torch.optim.Optimizer:
    """The optimizer ``optim.name`` selects (learning rate 0: the loop sets it per step).

    ``sgd``: :func:`make_sgd`. ``adamw``: AdamW (betas 0.9, 0.999) over
    :func:`rded_param_groups`, as RDED's training recipe (Sun et al. 2024: AdamW, lr 1e-3,
    weight decay 0.01 on >= 2-dimensional weights only)."""
    if name == "sgd":
        return make_sgd(model, weight_decay, momentum, nesterov)
    if name == "adamw":
        return torch.optim.AdamW(rded_param_groups(model, weight_decay), lr=0.0,
                                 betas=(0.9, 0.999))
    raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {name!r}")
