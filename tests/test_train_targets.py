"""Soft targets: top-K densification, KL and distillation losses, stored-target files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shardforge.ops.soft_targets import densify_topk
from shardforge.train.targets import (
    Batch,
    DistillationLoss,
    HardTargets,
    SoftTargetKLLoss,
    StoredDenseTargets,
    StoredTopKTargets,
    TeacherTargets,
    load_stored_targets,
)


def test_densify_keeps_topk_and_spreads_leftover_evenly():
    idx = torch.tensor([[3, 0], [1, 4]])
    probs = torch.tensor([[0.5, 0.2], [0.9, 0.05]], dtype=torch.float16)
    dense = densify_topk(idx, probs, num_classes=5)
    assert dense.dtype == torch.float32 and dense.shape == (2, 5)
    torch.testing.assert_close(dense.sum(1), torch.ones(2))
    p16 = probs.float()
    torch.testing.assert_close(dense[0, [3, 0]], p16[0])
    torch.testing.assert_close(dense[1, [1, 4]], p16[1])
    # leftover mass 1 - sum(topk) spread evenly over the other C - K = 3 classes
    torch.testing.assert_close(dense[0, [1, 2, 4]], ((1 - p16[0].sum()) / 3).expand(3))
    torch.testing.assert_close(dense[1, [0, 2, 3]], ((1 - p16[1].sum()) / 3).expand(3))


def test_densify_random_rows_sum_to_one_and_preserve_order():
    torch.manual_seed(0)
    logits = torch.randn(64, 100)
    full = logits.softmax(1)
    top = full.topk(5, dim=1)
    dense = densify_topk(top.indices, top.values.half(), 100)
    torch.testing.assert_close(dense.sum(1), torch.ones(64), atol=1e-3, rtol=0)
    assert torch.equal(dense.topk(5, dim=1).indices, top.indices)  # top-K order kept


def test_densify_overfull_rows_are_rescaled_and_full_k_renormalised():
    idx = torch.tensor([[0, 1]])
    dense = densify_topk(idx, torch.tensor([[0.7, 0.4]]), 3)    # mass 1.1 > 1
    torch.testing.assert_close(dense, torch.tensor([[0.7 / 1.1, 0.4 / 1.1, 0.0]]))
    dense = densify_topk(torch.tensor([[1, 0]]), torch.tensor([[0.5, 0.3]]), 2)  # K == C
    torch.testing.assert_close(dense, torch.tensor([[0.375, 0.625]]))


@pytest.mark.parametrize("idx,probs,match", [
    ([[0, 0]], [[0.5, 0.2]], "repeat"),
    ([[0, 9]], [[0.5, 0.2]], r"\[0, 5\)"),
    ([[0, 1]], [[0.5, -0.2]], ">= 0"),
    ([[0, 1, 2]], [[0.5, 0.2]], "both"),
])
def test_densify_rejects_bad_input(idx, probs, match):
    with pytest.raises(ValueError, match=match):
        densify_topk(torch.tensor(idx), torch.tensor(probs), 5)


def test_kl_loss_matches_definition_and_is_zero_at_target():
    torch.manual_seed(1)
    logits = torch.randn(8, 6)
    target = torch.randn(8, 6).softmax(1)
    expected = (target * (target.log() - logits.log_softmax(1))).sum(1).mean()
    torch.testing.assert_close(SoftTargetKLLoss()(logits, target), expected)
    assert SoftTargetKLLoss()(target.log(), target).abs() < 1e-6


def test_kl_with_one_hot_targets_is_cross_entropy():
    logits = torch.randn(4, 5)
    labels = torch.tensor([0, 3, 2, 4])
    one_hot = F.one_hot(labels, 5).float()
    torch.testing.assert_close(SoftTargetKLLoss()(logits, one_hot), F.cross_entropy(logits, labels))


def test_distillation_loss_temperature_scaling():
    torch.manual_seed(2)
    s, t = torch.randn(8, 10), torch.randn(8, 10)
    for temp in (1.0, 4.0):
        expected = F.kl_div((s / temp).log_softmax(1), (t / temp).softmax(1),
                            reduction="batchmean") * temp ** 2
        torch.testing.assert_close(DistillationLoss(temp)(s, t), expected)
    assert DistillationLoss(2.0)(t, t).abs() < 1e-6
    with pytest.raises(ValueError):
        DistillationLoss(0.0)


def test_stored_topk_targets_look_up_rows_by_sample_id(tmp_path):
    idx = np.array([[2, 0], [1, 3], [0, 1]], dtype=np.int32)
    probs = np.array([[0.6, 0.3], [0.8, 0.1], [0.5, 0.5]], dtype=np.float16)
    path = tmp_path / "soft.npz"
    np.savez(path, topk_indices=idx, topk_probs=probs)
    targets = load_stored_targets(str(path), num_classes=4, num_samples=3)
    assert isinstance(targets, StoredTopKTargets) and targets.needs_sample_ids
    ids = torch.tensor([2, 0])
    dense = targets.lookup(ids)
    torch.testing.assert_close(dense[0], torch.tensor([0.5, 0.5, 0.0, 0.0]))
    logits = torch.randn(2, 4)
    loss = targets.loss(logits, Batch(torch.zeros(2, 3, 4, 4), torch.tensor([0, 2]), ids))
    torch.testing.assert_close(loss, SoftTargetKLLoss()(logits, dense))
    with pytest.raises(ValueError, match="sample ids"):
        targets.loss(logits, Batch(torch.zeros(2, 3, 4, 4), torch.tensor([0, 2])))
    with pytest.raises(ValueError, match="rows"):
        load_stored_targets(str(path), num_classes=4, num_samples=5)


def test_stored_dense_targets(tmp_path):
    probs = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float16)
    np.savez(tmp_path / "d.npz", probs=probs)
    targets = load_stored_targets(str(tmp_path / "d.npz"), num_classes=2)
    assert isinstance(targets, StoredDenseTargets)
    torch.testing.assert_close(targets.lookup(torch.tensor([1, 0])),
                               torch.tensor([[1.0, 0.0], [0.25, 0.75]]))
    np.savez(tmp_path / "bad.npz", probs=np.array([[0.5, 0.2]], dtype=np.float32))
    with pytest.raises(ValueError, match="sum to 1"):
        load_stored_targets(str(tmp_path / "bad.npz"), num_classes=2)
    np.savez(tmp_path / "other.npz", logits=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="topk_indices"):
        load_stored_targets(str(tmp_path / "other.npz"), num_classes=2)


def test_teacher_targets_mix_kd_and_hard_loss():
    torch.manual_seed(3)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    images, labels = torch.randn(6, 3, 4, 4), torch.randint(0, 5, (6,))
    student = torch.randn(6, 5, requires_grad=True)
    batch = Batch(images, labels)
    t_logits = teacher(images).detach()
    pure = TeacherTargets(teacher, temperature=2.0).loss(student, batch)
    torch.testing.assert_close(pure, DistillationLoss(2.0)(student, t_logits))
    mixed = TeacherTargets(teacher, temperature=2.0, alpha=0.25, label_smoothing=0.0)
    expected = 0.25 * DistillationLoss(2.0)(student, t_logits) + 0.75 * F.cross_entropy(student, labels)
    torch.testing.assert_close(mixed.loss(student, batch), expected)
    mixed.loss(student, batch).backward()
    assert student.grad is not None
    assert all(not p.requires_grad for p in teacher.parameters())


def test_hard_targets_use_label_smoothing():
    logits, labels = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    torch.testing.assert_close(HardTargets(0.1).loss(logits, Batch(logits, labels)),
                               F.cross_entropy(logits, labels, label_smoothing=0.1))
