"""The per-shard algorithm of dataset reinforcement (ImageNet+, Faghri et al., ICCV 2023,
Sec. 3): per training image, ``num_augs`` augmentation records drawn from a generator
seeded by ``(seed, sample key)`` (:mod:`shardforge.augment`), replayed to pixels and run
through the teacher ensemble (:mod:`.teacher`, mean softmax at T=1); per augmentation the
record and the teacher's top-``top_k`` probabilities (float16) and class indices (int16)
are written as one parquet row, aligned with the parent's tar by sample key.

:class:`Reinforcer` is the actor that keeps the ensemble loaded (GPU when given one, bf16
autocast there); a thread decodes and augments the next batch while the teacher runs the
current one. Each shard is written under a temporary name, then renamed, with a manifest
(spec hash + sha256), so a rerun verifies and skips it (:func:`load_complete`).
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from shardforge.augment import (
    AugPolicy,
    apply_batch,
    image_rng,
    param_dtype,
    params_to_columns,
    sample_params,
)
from shardforge.engine.cluster import node_id
from shardforge.engine.manifest import verified_result, write_manifest
from shardforge.layout.files import WORK_DIR
from shardforge.models.reference import ObserverRef
from shardforge.sources.base import RawSample, Reject, ShardSpec, SourceOptions
from shardforge.storage import Location, resolve

FORMAT_VERSION = 1
REINFORCE_DIR = "reinforce"
PIPELINE_NAME = "reinforce"


@dataclass(frozen=True)
class ShardTask:
    """What a reinforcement actor needs besides the shard spec."""

    out: str
    name: str
    num_augs: int
    top_k: int
    seed: int
    policy: AugPolicy
    batch_size: int
    params_hash: str           # everything that decides the outputs (teachers' sha256 included)

    def spec_hash(self, spec: ShardSpec) -> str:
        blob = json.dumps({"v": FORMAT_VERSION, "spec": spec.plain(), "p": self.params_hash},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def paths(self, spec: ShardSpec) -> dict[str, Location]:
        out = resolve(self.out)
        return {"shard": out.join(REINFORCE_DIR, shard_name(self.name, spec)),
                "manifest": out.join(WORK_DIR, f"{spec.name}.json")}


def shard_name(name: str, spec: ShardSpec) -> str:
    """``NAME-SPLIT-NNNNNN.parquet``, numbered like the parent's tar it is aligned with."""
    return f"{name}-{spec.split}-{spec.index:06d}.parquet"


def output_schema(policy: AugPolicy, top_k: int) -> pa.Schema:
    """One row per stored augmentation: sample key, label, augmentation number, the
    record's fields (``aug_*``), top-K class indices (int16) and probabilities (float16)."""
    dtype = param_dtype(policy)
    fields = [("key", pa.string()), ("label", pa.int32()), ("aug", pa.int32())]
    fields += [(f"aug_{n}", pa.from_numpy_dtype(dtype[n])) for n in dtype.names or ()]
    fields += [("topk_indices", pa.list_(pa.int16(), top_k)),
               ("topk_probs", pa.list_(pa.float16(), top_k))]
    return pa.schema(fields)


# ----------------------------------------------------------------------------- the actor

class Reinforcer:
    """Holds the ensemble (one per Ray actor) and reinforces shard after shard."""

    def __init__(self, task: ShardTask, teachers: tuple[ObserverRef, ...],
                 classes: tuple[str, ...], dataset: str) -> None:
        from shardforge.variants.reinforce.teacher import load_ensemble

        self.task = task
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_ensemble(teachers, classes, dataset).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        else:
            torch.set_num_threads(1)

    def build(self, spec: ShardSpec) -> dict:
        """Reinforce one shard (or verify and reuse it); returns its result record."""
        task = self.task
        done = load_complete(task, spec)
        if done is not None:
            return done
        started = time.perf_counter()
        samples, rejects = _decode(spec)
        table = self.reinforce(samples, [item[3] for item in spec.items])
        paths = task.paths(spec)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        paths["shard"].parent().makedirs()
        paths["manifest"].parent().makedirs()
        paths["shard"].write_bytes_atomic(data)
        record = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        result = {"split": spec.split, "index": spec.index, "samples": len(samples),
                  "augmentations": table.num_rows, "rejects": rejects,
                  "files": {"shard": record},
                  "file": {"path": f"{REINFORCE_DIR}/{shard_name(task.name, spec)}",
                           "url": paths["shard"].url, **record},
                  "seconds": round(time.perf_counter() - started, 3), "reused": False,
                  "node": node_id(), "device": self.device.type}
        write_manifest(paths["manifest"], task.spec_hash(spec), result)
        return result

    def reinforce(self, samples: list[tuple[RawSample, np.ndarray]],
                  shard_keys: list[str] | None = None) -> pa.Table:
        """Records + teacher top-K for every (sample, augmentation) of one shard.

        With a mixing policy, partners are drawn among the shard's decoded ``samples``; a
        record stores its partner as the position in ``shard_keys`` (the parent tar's
        order, which replay reads by), default the samples' own order."""
        task = self.task
        keys = shard_keys if shard_keys is not None else [raw.key for raw, _ in samples]
        position = {k: n for n, k in enumerate(keys)}
        pool = np.array([position[raw.key] for raw, _ in samples], np.int64)
        sizes = np.array([(px.shape[1], px.shape[0]) for _, px in samples], np.int64)
        records = [sample_params(task.policy, px.shape[1], px.shape[0],
                                 image_rng(task.seed, raw.key), task.num_augs,
                                 partner_sizes=sizes if task.policy.mixing else None)
                   for raw, px in samples]
        by_position = {int(p): n for n, p in enumerate(pool)}
        if task.policy.mixing:
            for rec in records:       # pool index -> position in the parent's tar
                mixes = rec["partner"] >= 0
                rec["partner"][mixes] = pool[rec["partner"][mixes]]
        pairs = [(s, a) for s in range(len(samples)) for a in range(task.num_augs)]
        chunks = [pairs[i:i + task.batch_size] for i in range(0, len(pairs), task.batch_size)]

        def partner(s: int, a: int) -> np.ndarray | None:
            q = int(records[s][a]["partner"]) if task.policy.mixing else -1
            return samples[by_position[q]][1] if q >= 0 else None

        def views(chunk: list[tuple[int, int]]) -> torch.Tensor:
            rows = np.stack([records[s][a] for s, a in chunk])
            return apply_batch([samples[s][1] for s, _ in chunk], rows, task.policy,
                               partners=[partner(s, a) for s, a in chunk])

        idx = np.zeros((len(pairs), task.top_k), np.int16)
        prob = np.zeros((len(pairs), task.top_k), np.float16)
        at = 0
        # CPU decode/augment of the next chunk overlaps the teacher's forward of this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(views, chunks[0]) if chunks else None
            for n in range(len(chunks)):
                batch = pending.result()
                pending = pool.submit(views, chunks[n + 1]) if n + 1 < len(chunks) else None
                p = self.predict(batch)
                top = torch.topk(p, min(task.top_k, p.shape[1]), dim=1)
                k = top.indices.shape[1]
                idx[at:at + len(batch), :k] = top.indices.numpy().astype(np.int16)
                prob[at:at + len(batch), :k] = top.values.numpy().astype(np.float16)
                at += len(batch)
        return _table(task, samples, records, idx, prob)

    @torch.no_grad()
    def predict(self, views_u8: torch.Tensor) -> torch.Tensor:
        """Ensemble probabilities (float32, CPU) for uint8 ``N x 3 x S x S`` views."""
        from shardforge.ops.autocast import autocast
        from shardforge.ops.normalize import normalize_images

        on_gpu = self.device.type == "cuda"
        x = normalize_images(views_u8.to(self.device, non_blocking=True), on_gpu)
        with autocast(self.device, torch.bfloat16 if on_gpu else None):
            return self.model(x).float().cpu()


def decode_stored(data: bytes | memoryview) -> np.ndarray:
    """A stored sample's pixels (H x W x 3 uint8) with the decoder the replay loader uses,
    so generation and replay start from the same pixels (PNG or JPEG by magic bytes)."""
    from shardforge.formats.decode import decode_full

    return decode_full(data, is_png=bytes(data[:4]) == b"\x89PNG")


def _decode(spec: ShardSpec) -> tuple[list[tuple[RawSample, np.ndarray]], list[dict]]:
    from shardforge.formats.decode import DecodeError
    from shardforge.sources import read_shard

    samples, rejects = [], []
    for item in read_shard(spec, SourceOptions()):
        if isinstance(item, Reject):
            rejects.append(asdict(item))
            continue
        try:
            pixels = decode_stored(item.data)
            _check_usable(pixels)
        except DecodeError as exc:
            rejects.append(asdict(Reject(item.origin, str(exc), spec.split)))
            continue
        except Exception as exc:   # one parent sample must not end the job: a reject
            rejects.append(asdict(Reject(item.origin, f"{type(exc).__name__}: {exc}",
                                         spec.split)))
            continue
        samples.append((item, pixels))
    return samples, rejects


def _check_usable(pixels: np.ndarray) -> None:
    """Raise ValueError unless ``pixels`` is what augmentation needs (H x W x 3 uint8)."""
    if not (pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype == np.uint8
            and min(pixels.shape[:2]) >= 1):
        raise ValueError(f"decoded to {pixels.dtype} {pixels.shape}, not H x W x 3 uint8")


def _table(task: ShardTask, samples, records, idx: np.ndarray, prob: np.ndarray) -> pa.Table:
    n_aug = task.num_augs
    keys = [raw.key for raw, _ in samples for _ in range(n_aug)]
    labels = np.repeat([raw.label for raw, _ in samples], n_aug).astype(np.int32)
    all_records = (np.concatenate(records) if records
                   else np.zeros(0, param_dtype(task.policy)))
    cols = {"key": pa.array(keys, pa.string()), "label": pa.array(labels),
            "aug": pa.array(np.tile(np.arange(n_aug, dtype=np.int32), len(samples)))}
    for name, values in params_to_columns(all_records).items():
        cols[name] = pa.array(values)
    k = task.top_k
    cols["topk_indices"] = pa.FixedSizeListArray.from_arrays(pa.array(idx.reshape(-1)), k)
    cols["topk_probs"] = pa.FixedSizeListArray.from_arrays(pa.array(prob.reshape(-1)), k)
    return pa.table(cols, schema=output_schema(task.policy, k))


def load_complete(task: ShardTask, spec: ShardSpec) -> dict | None:
    """The recorded result when this shard is complete and its file verifies, else None."""
    paths = task.paths(spec)
    recorded = verified_result(paths["manifest"], task.spec_hash(spec), paths)
    return None if recorded is None else {**recorded, "reused": True}
