"""Training targets: hard labels, stored soft targets (sparse top-K or dense), online teacher.

The training loop asks a :class:`Targets` object for the loss of a batch; which kind is
used comes from the ``targets`` section of the config (:func:`build_targets`).

Stored soft targets live in a ``.npz`` file, row ``i`` for the sample at ``beton_index`` ``i``
of the training split (see docs/training.md):

* sparse top-K: ``topk_indices`` (int, N x K) and ``topk_probs`` (float16, N x K); the mass
  ``1 - sum(topk_probs)`` is spread evenly over the other ``C - K`` classes;
* dense: ``probs`` (float16/float32, N x C), each row a distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shardforge.ops.soft_targets import MASS_TOLERANCE, densify_topk


class SoftTargetKLLoss(nn.Module):
    """``KL(target || softmax(logits))`` averaged over the batch.

    In torch's convention ``F.kl_div(log_softmax(logits), target, reduction="batchmean")``.
    ``target`` rows are probability distributions (B x C).
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits.float(), dim=1), target.float(),
                        reduction="batchmean")


class DistillationLoss(nn.Module):
    """Hinton distillation: ``KL(softmax(t / T) || softmax(s / T)) * T^2``, batch mean.

    The ``T^2`` factor keeps gradient magnitudes comparable across temperatures (Hinton et
    al. 2015). ``t_squared=False`` leaves it out, as RDED's training code does
    (``validation/main.py``: ``KLDivLoss(log_softmax(s / T), softmax(t / T))``).
    """

    def __init__(self, temperature: float = 4.0, t_squared: bool = True) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"distillation temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.factor = temperature * temperature if t_squared else 1.0

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        return F.kl_div(F.log_softmax(student_logits.float() / t, dim=1),
                        F.softmax(teacher_logits.float() / t, dim=1),
                        reduction="batchmean") * self.factor


@dataclass
class Batch:
    """One training batch: normalised images (B x 3 x H x W), labels (B,), optional sample
    ids and optional per-sample target distributions (B x C) that came with the images."""

    images: torch.Tensor
    labels: torch.Tensor
    sample_ids: torch.Tensor | None = None
    soft_targets: torch.Tensor | None = None


class Targets:
    """What the model is trained towards; :meth:`loss` maps (logits, batch) to a scalar."""

    #: Whether batches must carry ``sample_ids`` (stored per-sample targets need them).
    needs_sample_ids = False

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def to(self, device: torch.device) -> Targets:
        """Move any tensors or models this object holds to ``device``; returns self."""
        return self


class HardTargets(Targets):
    """Cross-entropy on the labels with label smoothing (the recipe default, 0.1)."""

    def __init__(self, label_smoothing: float = 0.1) -> None:
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.criterion(logits.float(), batch.labels)


def _require_ids(batch: Batch, kind: str) -> torch.Tensor:
    if batch.sample_ids is None:
        raise ValueError(f"targets.kind={kind!r} needs per-sample ids in each batch, but the "
                         "loader gave none; use a loader that yields sample ids")
    return batch.sample_ids.long()


class StoredTopKTargets(Targets):
    """Stored sparse teacher probabilities (top-K indices + float16 probs), KL loss."""

    needs_sample_ids = True

    def __init__(self, indices: torch.Tensor, probs: torch.Tensor, num_classes: int) -> None:
        if indices.shape != probs.shape or indices.dim() != 2:
            raise ValueError(f"stored top-K targets: indices {tuple(indices.shape)} and probs "
                             f"{tuple(probs.shape)} must both be (samples, K)")
        self.indices, self.probs, self.num_classes = indices, probs, num_classes
        self.criterion = SoftTargetKLLoss()

    def lookup(self, sample_ids: torch.Tensor) -> torch.Tensor:
        """Dense targets (B x C) for the samples ``sample_ids`` (rows of the stored table)."""
        ids = sample_ids.to(self.indices.device).long()
        return densify_topk(self.indices[ids], self.probs[ids], self.num_classes)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = self.lookup(_require_ids(batch, "topk")).to(logits.device)
        return self.criterion(logits, target)

    def to(self, device: torch.device) -> StoredTopKTargets:
        self.indices, self.probs = self.indices.to(device), self.probs.to(device)
        return self


class StoredDenseTargets(Targets):
    """Stored per-sample soft labels (one distribution per sample), KL loss."""

    needs_sample_ids = True

    def __init__(self, probs: torch.Tensor) -> None:
        if probs.dim() != 2:
            raise ValueError(f"stored dense targets must be (samples, classes), got "
                             f"{tuple(probs.shape)}")
        sums = probs.float().sum(dim=1)
        if (probs < 0).any() or ((sums - 1).abs() > MASS_TOLERANCE).any():
            raise ValueError("stored dense targets: every row must be >= 0 and sum to 1 "
                             f"(within {MASS_TOLERANCE}); renormalise the file")
        self.probs = probs
        self.criterion = SoftTargetKLLoss()

    def lookup(self, sample_ids: torch.Tensor) -> torch.Tensor:
        """Dense float32 targets (B x C) for ``sample_ids``, renormalised to sum to 1."""
        rows = self.probs[sample_ids.to(self.probs.device).long()].float()
        return rows / rows.sum(dim=1, keepdim=True)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        target = self.lookup(_require_ids(batch, "dense")).to(logits.device)
        return self.criterion(logits, target)

    def to(self, device: torch.device) -> StoredDenseTargets:
        self.probs = self.probs.to(device)
        return self


class ReplayedTargets(Targets):
    """The target each batch brings (a reinforced dataset's densified teacher top-K for the
    replayed view): ``KL(target || softmax(logits))``, no label smoothing, no temperature,
    no hard-label term (ImageNet+, Faghri et al. 2023, Sec. 3.2)."""

    def __init__(self) -> None:
        self.criterion = SoftTargetKLLoss()

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        if batch.soft_targets is None:
            raise ValueError("targets.kind='reinforced' needs batches with soft targets: "
                             "train on a reinforced dataset (pipelines/reinforce.py)")
        return self.criterion(logits, batch.soft_targets.to(logits.device))


class TeacherTargets(Targets):
    """Online distillation from a frozen teacher run on the same (augmented) images.

    Loss ``alpha * KD_T(student, teacher) + (1 - alpha) * CE(labels)`` with
    :class:`DistillationLoss` at temperature ``T``; ``alpha = 1`` is pure distillation.
    """

    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 1.0,
                 label_smoothing: float = 0.1, t_squared: bool = True) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"targets.alpha must be in [0, 1], got {alpha}")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.kd = DistillationLoss(temperature, t_squared)
        self.alpha = alpha
        self.hard = HardTargets(label_smoothing)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(batch.images)
        loss = self.alpha * self.kd(logits, teacher_logits)
        if self.alpha < 1.0:
            loss = loss + (1.0 - self.alpha) * self.hard.loss(logits, batch)
        return loss

    def to(self, device: torch.device) -> TeacherTargets:
        self.teacher = self.teacher.to(device)
        return self


def load_stored_targets(path: str, num_classes: int, num_samples: int | None = None) -> Targets:
    """Read a soft-target ``.npz`` (local path or URL) into a :class:`Targets`.

    Keys ``topk_indices`` + ``topk_probs`` give :class:`StoredTopKTargets`; ``probs`` gives
    :class:`StoredDenseTargets`. ``num_samples``, when given, must equal the row count.
    Raises ValueError naming the file and the problem.
    """
    import io

    from shardforge.storage import resolve

    try:
        targets, rows = _read_npz(np.load(io.BytesIO(resolve(path).read_bytes()),
                                          allow_pickle=False), path, num_classes)
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
        raise ValueError(f"{path}: refused to load: it holds pickled object arrays; store "
                         "numeric arrays only (np.savez(path, topk_indices=..., "
                         "topk_probs=...))") from None
    if num_samples is not None and rows != num_samples:
        raise ValueError(f"{path}: {rows} rows of soft targets for a training split of "
                         f"{num_samples} samples; regenerate it for this dataset")
    return targets


def _read_npz(npz, path: str, num_classes: int) -> tuple[Targets, int]:
    with npz as data:
        keys = set(data.files)
        if {"topk_indices", "topk_probs"} <= keys:
            idx = torch.from_numpy(data["topk_indices"].astype(np.int64))
            probs = torch.from_numpy(data["topk_probs"].astype(np.float16))
            targets: Targets = StoredTopKTargets(idx, probs, num_classes)
            rows = idx.shape[0]
        elif "probs" in keys:
            probs = torch.from_numpy(np.asarray(data["probs"]))
            if probs.shape[1:] != (num_classes,):
                raise ValueError(f"{path}: probs has shape {tuple(probs.shape)}, expected "
                                 f"(samples, {num_classes})")
            targets = StoredDenseTargets(probs)
            rows = probs.shape[0]
        else:
            raise ValueError(f"{path}: a soft-target file needs arrays topk_indices + topk_probs "
                             f"(sparse) or probs (dense); it has {sorted(keys)}")
    return targets, rows
