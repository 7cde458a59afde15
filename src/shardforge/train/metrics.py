"""Per-epoch metrics: accuracy counting, the JSONL log of a run and its console line."""

from __future__ import annotations

import json

import torch

from shardforge.storage import resolve

METRICS_FILE = "metrics.jsonl"


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)
                 ) -> list[int]:
    """Number of samples whose label is among the top-k logits, for each k (k capped at C)."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hit = top.eq(labels.view(-1, 1))
    return [int(hit[:, :min(k, maxk)].any(dim=1).sum()) for k in ks]


def append_metrics(run_dir: str, record: dict) -> None:
    """Add ``record`` to ``RUN_DIR/metrics.jsonl`` (rewritten atomically; works on s3:// too).

    Earlier lines with the same or a later ``epoch`` are dropped first, so an epoch replayed
    after a crash appears once.
    """
    loc = resolve(run_dir).join(METRICS_FILE)
    lines = [json.loads(line) for line in read_lines(loc)]
    kept = [r for r in lines if r.get("epoch", 0) < record["epoch"]]
    kept.append(record)
    loc.write_bytes_atomic("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept).encode())


def read_lines(loc) -> list[str]:
    """Non-empty lines of a text file at ``loc`` (a storage Location), [] if it is missing."""
    if not loc.exists():
        return []
    return [line for line in loc.read_bytes().decode().splitlines() if line.strip()]


def read_metrics(run_dir: str) -> list[dict]:
    """The records of ``RUN_DIR/metrics.jsonl`` (empty list when there is none)."""
    return [json.loads(line) for line in read_lines(resolve(run_dir).join(METRICS_FILE))]


def format_metrics(m: dict) -> str:
    """One console line for an epoch's metrics (with the corrupt samples skipped, if any)."""
    line = (f"epoch {m['epoch']}/{m['epochs']} res {m['res']} | train loss {m['train_loss']:.4f} "
            f"| val top1 {m['top1']:.4f} top5 {m['top5']:.4f} (no TTA {m['top1_no_tta']:.4f}) "
            f"loss {m['val_loss']:.4f} | {m['images_per_s']:.1f} img/s | "
            f"epoch {m['epoch_time_s']:.1f} s")
    for prefix, split in (("", "train"), ("val_", "val")):
        count = m.get(f"{prefix}skipped_samples", 0)
        if count:
            keys = m.get(f"{prefix}skipped_keys", [])
            more = ", ..." if count > len(keys) else ""
            line += (f" | skipped {count} corrupt {split} sample(s): "
                     f"{', '.join(keys)}{more}")
    return line
