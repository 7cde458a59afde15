"""Evaluation: top-1/top-5 with and without horizontal-flip test-time augmentation."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from shardforge.ops.autocast import autocast
from shardforge.train.metrics import topk_correct

EVAL_KEYS = ("loss_sum", "top1", "top5", "top1_no_tta", "top5_no_tta", "count")


@torch.no_grad()
def evaluate_counts(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    device: torch.device, amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sums over ``batches`` as a float64 tensor ordered as :data:`EVAL_KEYS`.

    ``top1``/``top5``/``loss_sum`` use the average of the logits of each image and its
    horizontal flip (TTA); ``*_no_tta`` the plain logits. The loss is cross-entropy without
    smoothing. Sums (not means) so ranks can all-reduce them before dividing by ``count``.
    """
    model.eval()
    sums = torch.zeros(len(EVAL_KEYS), dtype=torch.float64)
    for images, labels in batches:
        images, labels = images.to(device, non_blocking=True), labels.to(device)
        with autocast(device, amp_dtype):
            plain = model(images).float()
            flipped = model(torch.flip(images, dims=[3])).float()
        tta = (plain + flipped) / 2
        t1, t5 = topk_correct(tta, labels)
        n1, n5 = topk_correct(plain, labels)
        loss = F.cross_entropy(tta, labels, reduction="sum").item()
        sums += torch.tensor([loss, t1, t5, n1, n5, labels.numel()], dtype=torch.float64)
    return sums


def summarize(sums: torch.Tensor, tta: bool = True) -> dict:
    """Turn :func:`evaluate_counts` sums into rates: ``top1``/``top5`` follow ``tta``."""
    s = dict(zip(EVAL_KEYS, sums.tolist(), strict=True))
    n = max(s["count"], 1.0)
    out = {"val_loss": s["loss_sum"] / n, "top1_tta": s["top1"] / n, "top5_tta": s["top5"] / n,
           "top1_no_tta": s["top1_no_tta"] / n, "top5_no_tta": s["top5_no_tta"] / n,
           "val_samples": int(s["count"])}
    out["top1"] = out["top1_tta"] if tta else out["top1_no_tta"]
    out["top5"] = out["top5_tta"] if tta else out["top5_no_tta"]
    return out
