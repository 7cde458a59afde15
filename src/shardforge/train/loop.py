"""The per-worker training function (Ray Train's ``train_loop_per_worker``, or a local process).

Per epoch: set the resolution (progressive resizing), train with the per-iteration
triangular LR, validate (flip TTA), all-reduce the counts, then rank 0 writes a checkpoint
and a ``metrics.jsonl`` line and every rank reports. A restarted run resumes from the newest
checkpoint: model, optimizer, grad scaler, epoch counter and loader order.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
from torch import nn

from shardforge.layout.info import DatasetInfo
from shardforge.models.archs import build_model
from shardforge.models.checkpoint import STATE_FORMAT, checkpoint_name, save_state
from shardforge.ops.autocast import autocast
from shardforge.stream.faults import MAX_KEYS
from shardforge.train.batch_augment import BatchAugment
from shardforge.train.config import TrainConfig
from shardforge.train.data import EpochData, make_epoch_data
from shardforge.train.evaluate import evaluate_counts, summarize
from shardforge.train.metrics import append_metrics, format_metrics, topk_correct
from shardforge.train.optim import make_optimizer
from shardforge.train.schedule import iteration_lrs, resolution_at
from shardforge.train.session import Session, scratch_dir
from shardforge.train.targets import Targets, TeacherTargets
from shardforge.train.teacher import build_targets


def amp_dtype_for(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: ``auto`` is bf16 on CUDA and off elsewhere; ``off`` is None."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    return torch.float16 if mode == "fp16" else torch.bfloat16


def _all_reduce(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        work = t.to(device)
        dist.all_reduce(work)
        return work.cpu()
    return t


def broadcast_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running stats) before evaluating.

    DDP broadcasts buffers at the start of each forward, so after the last step each rank
    holds its own update; syncing makes every rank evaluate the model that rank 0 saves.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)


def train_one_epoch(model: nn.Module, data: EpochData, targets: Targets,
                    optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    epoch: int, res: int, cfg: TrainConfig, device: torch.device,
                    amp_dtype: torch.dtype | None,
                    augment: BatchAugment | None = None) -> torch.Tensor:
    """One epoch; returns float64 sums ``[loss * n, correct, n, steps]`` for this worker.

    ``augment`` (patch shuffle, CutMix) changes the images before model and targets."""
    model.train()
    steps = data.train_steps()
    lrs = iteration_lrs(epoch, steps, cfg.optim.lr, cfg.training.epochs, cfg.optim.lr_peak_epoch,
                        cfg.optim.schedule)
    if augment is not None:
        augment.start_epoch(epoch)
    sums = torch.zeros(4, dtype=torch.float64)
    for i, batch in enumerate(data.train_epoch(epoch, res)):
        lr = float(lrs[min(i, len(lrs) - 1)]) if len(lrs) else 0.0
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch.images = batch.images.to(device, non_blocking=True)
        batch.labels = batch.labels.to(device, non_blocking=True)
        if augment is not None and augment.active:
            batch.images = augment(batch.images)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp_dtype):
            logits = model(batch.images)
            loss = targets.loss(logits, batch)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        n = batch.labels.numel()
        sums += torch.tensor([loss.item() * n, topk_correct(logits.detach(), batch.labels, (1,))[0],
                              n, 1], dtype=torch.float64)
    return sums


def skipped_metrics(data: EpochData, device: torch.device) -> dict:
    """``skipped_samples`` / ``skipped_keys`` (train) and ``val_skipped_samples`` /
    ``val_skipped_keys`` of the epoch, summed / gathered over all ranks (every rank must
    call it); ``{}`` for loaders that do not skip corrupt samples."""
    reports = data.skipped()
    if reports is None:
        return {}
    splits = ("train", "val")
    counts = _all_reduce(torch.tensor([float(reports[s]["count"]) for s in splits],
                                      dtype=torch.float64), device)
    keys = {s: list(reports[s]["keys"]) for s in splits}
    if counts.sum() > 0 and dist.is_available() and dist.is_initialized() \
            and dist.get_world_size() > 1:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, keys)
        keys = {s: [k for g in gathered for k in g[s]] for s in splits}
    out = {}
    for s, count in zip(splits, counts.tolist(), strict=True):
        prefix = "" if s == "train" else "val_"
        out[f"{prefix}skipped_samples"] = int(count)
        out[f"{prefix}skipped_keys"] = keys[s][:MAX_KEYS]
    return out


def _resume(state: dict | None, model: nn.Module, optimizer, scaler) -> tuple[int, list[dict]]:
    if state is None:
        return 0, []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    return int(state["epochs_done"]), list(state.get("metrics", []))


def run_worker(payload: dict, session: Session) -> list[dict]:
    """Train as one worker of ``session``; returns the metrics history (all epochs so far).

    ``payload``: ``config`` (:meth:`TrainConfig.to_dict`), ``dataset``
    (:meth:`DatasetInfo.to_dict`), ``run_dir`` (checkpoints and metrics.jsonl).
    """
    cfg = TrainConfig.from_dict(payload["config"])
    info = DatasetInfo.from_dict(payload["dataset"])
    device = session.device
    torch.manual_seed(cfg.training.seed + session.rank)
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    channels_last = on_gpu if cfg.training.channels_last == "auto" else bool(cfg.training.channels_last)
    amp_dtype = amp_dtype_for(cfg.training.amp, device)

    spec = {"arch": cfg.model.arch, "num_classes": info.num_classes,
            "blurpool": cfg.model.blurpool, "width": cfg.model.width}
    model = build_model(**spec).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg.optim.name, cfg.optim.weight_decay,
                               cfg.optim.momentum, cfg.optim.nesterov)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    start, history = _resume(session.resume_state(), model, optimizer, scaler)
    if start and session.rank == 0:
        session.say(f"resuming {payload['run_dir']} after epoch {start}")
    trained = model
    if session.world_size > 1:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if on_gpu else None)
    data = make_epoch_data(cfg, info, session, channels_last)
    targets = build_targets(cfg, info).to(device)
    if isinstance(targets, TeacherTargets) and channels_last:
        targets.teacher = targets.teacher.to(memory_format=torch.channels_last)
    if targets.needs_sample_ids and not data.provides_sample_ids:
        raise ValueError(f"targets.kind={cfg.targets.kind} needs sample ids, which the "
                         f"{cfg.data.loader} loader does not provide yet")

    augment = BatchAugment(cfg.training.patch_shuffle, cfg.training.cutmix, cfg.training.seed,
                           session.rank, cfg.training.crop_scale)
    for epoch in range(start, cfg.training.epochs):
        res = resolution_at(epoch, cfg.resolution.min_res, cfg.resolution.max_res,
                            cfg.resolution.start_ramp, cfg.resolution.end_ramp)
        t0 = time.perf_counter()
        train_sums = train_one_epoch(trained, data, targets, optimizer, scaler, epoch, res, cfg,
                                     device, amp_dtype, augment)
        train_sums = _all_reduce(train_sums, device)
        t1 = time.perf_counter()
        broadcast_buffers(model)
        val = summarize(_all_reduce(evaluate_counts(model, data.val_batches(), device, amp_dtype),
                                    device), tta=cfg.validation.tta)
        t2 = time.perf_counter()
        skipped = skipped_metrics(data, device)
        loss_sum, correct, seen, steps = train_sums.tolist()
        metrics = {"epoch": epoch + 1, "epochs": cfg.training.epochs, "res": res,
                   "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / max(seen, 1),
                   "train_top1": correct / max(seen, 1), "train_samples": int(seen),
                   "steps": int(steps), **val, "images_per_s": seen / max(t1 - t0, 1e-9),
                   "train_time_s": t1 - t0, "val_time_s": t2 - t1, "epoch_time_s": t2 - t0,
                   "world_size": session.world_size, "time": time.time(), **skipped}
        history = [h for h in history if h["epoch"] < metrics["epoch"]] + [metrics]
        with scratch_dir() as d:
            ckpt_dir = None
            if session.rank == 0:
                save_state(d, {
                    "format": STATE_FORMAT, "epochs_done": epoch + 1, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                    "loader": {**data.state(), "next_epoch": epoch + 1}, "model_spec": spec,
                    "classes": list(info.classes), "config": cfg.to_dict(),
                    "dataset": info.url, "metrics": history})
                ckpt_dir = d
                append_metrics(payload["run_dir"], metrics)
                session.say(format_metrics(metrics))
            session.report(metrics, ckpt_dir, checkpoint_name(epoch + 1))
    return history


def ray_train_loop(payload: dict) -> None:
    """``train_loop_per_worker`` for Ray Train's ``TorchTrainer`` (payload as :func:`run_worker`)."""
    from shardforge.train.session import RaySession

    run_worker(payload, RaySession(payload["run_dir"]))
