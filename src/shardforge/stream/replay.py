"""Replay a reinforced dataset (ImageNet+): the parent's images, a stored augmentation
per sample and epoch, rebuilt pixel-exactly, with the teacher's densified soft target.

Per sample and epoch (Faghri et al., ICCV 2023, Sec. 3.2): with probability
``p_reinforce`` (0.99) one of the ``num_augs`` stored augmentation records is picked
uniformly at random, replayed on the parent image (:func:`shardforge.augment.
apply_params`) and paired with its stored top-K probabilities, densified by spreading
``1 - sum(top-K)`` evenly over the other classes; otherwise a fresh augmentation from the
same policy is drawn and paired with the one-hot label. Partitioning, equal per-rank
counts, seeding and mid-epoch resume are :class:`~shardforge.stream.wds_stream.WdsStream`'s.

Batches are ``(views, labels, targets, ids)``: uint8 ``B x 3 x S x S`` views, int64
labels, float32 ``B x C`` targets and each sample's position in the split.

Memory: the stored records (about ``num_augs * 68`` bytes per image with the default
policy and K=10; ~35 GB for ImageNet+'s 1.28 M images x 400 augmentations) are aligned
with the split's positions once per node into ``.npy`` files of a local cache
(:func:`load_reinforced_split`, :mod:`shardforge.stream.array_cache`; default
``CATALOG_HOME/cache/replay``, the same size on disk) and memory-mapped read-only: the
pages sit in the OS page cache, shared by every rank and loader worker of the node, and
no process holds a private copy (pickling to spawned workers sends the folder, not the
arrays). Measured (``bench/replay_memory.py``, BENCHMARKS.md "Replay loader memory"; 200 k
images x 50 augmentations, 648 MiB of arrays, 4 processes): 4.0x less memory than one
private in-RAM copy per process (655 vs 2,591 MiB of PSS above the processes' baseline);
the cache is built once in ~9 s. The build's costs grow linearly (``bench/scale_replay.py``,
docs/scale.md; 1/100 to 1/10 of ImageNet+): ~0.6 µs of user CPU per (sample,
augmentation), flat within 1.1x, memory bounded by one reinforcement file (~0.3 GiB) plus
~55 B per sample; fitted, ~6.5 CPU-minutes for ImageNet+.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from shardforge.layout.dataset import DatasetRef
from shardforge.layout.reader import RangeReader
from shardforge.storage import resolve
from shardforge.stream.wds_stream import WdsStream

P_REINFORCE = 0.99   # ImageNet+ Sec. 3.2: a stored augmentation with probability 0.99
_CHECK_BYTES = 1 << 24   # the completeness check maps this much of the mask at a time


@dataclass(frozen=True)
class ReinforcedSplit:
    """A split's stored augmentations, aligned with the parent split's positions.

    ``params``: structured records ``[N, A]``; ``topk_indices`` int16 ``[N, A, K]``;
    ``topk_probs`` float16 ``[N, A, K]``. From :func:`load_reinforced_split` they are
    read-only memmaps of the replay cache in ``cache`` (a folder), and pickling (e.g. to
    spawned loader workers) stores that folder, not the arrays: the copy reopens the
    files. Without ``cache`` the arrays are pickled by value.
    """

    params: np.ndarray
    topk_indices: np.ndarray
    topk_probs: np.ndarray
    cache: str | None = None

    @property
    def num_augs(self) -> int:
        return self.params.shape[1]

    def __reduce__(self):
        if self.cache is None:
            return (ReinforcedSplit, (self.params, self.topk_indices, self.topk_probs))
        specs = {name: (getattr(self, name).shape, getattr(self, name).dtype)
                 for name in _ARRAYS}
        return (_reopen_split, (self.cache, specs))


_ARRAYS = ("params", "topk_indices", "topk_probs")


def _reopen_split(cache: str, specs: dict) -> ReinforcedSplit:
    from shardforge.stream.array_cache import reopen

    arrays = reopen(cache, specs)
    return ReinforcedSplit(**arrays, cache=cache)


def default_cache_dir() -> str:
    """Where :func:`load_reinforced_split` keeps its caches by default:
    ``CATALOG_HOME/cache/replay`` (the catalog home is always a local directory:
    ``$SHARDFORGE_HOME``, else ``~/.shardforge``)."""
    from shardforge.catalog.home import default_home

    return str(default_home() / "cache" / "replay")


def replay_digest(reinforce: dict, keys: np.ndarray) -> str:
    """sha256 of everything the aligned arrays derive from: the reinforcement files
    (path + sha256, in order), the parent split's keys in position order, and the
    split, ``num_augs``, ``top_k``, ``seed`` and policy of the ``reinforce`` section."""
    missing = [f.get("path") for f in reinforce["files"] if not f.get("sha256")]
    if missing:
        raise ValueError(f"reinforcement files {missing[:3]} have no sha256 in the summary; "
                         "rerun pipelines/reinforce.py to rewrite it")
    h = hashlib.sha256()
    h.update(json.dumps({
        "format": 1, "split": reinforce["split"], "num_augs": int(reinforce["num_augs"]),
        "top_k": int(reinforce["top_k"]), "seed": reinforce.get("seed"),
        "policy": reinforce["policy"],
        "files": [[f["path"], f["sha256"]] for f in reinforce["files"]],
        "num_keys": len(keys)}, sort_keys=True).encode())
    for key in keys.tolist():
        h.update(key.encode())
        h.update(b"\0")
    return h.hexdigest()


def load_reinforced_split(root: str, reinforce: dict, parent: DatasetRef, *,
                          cache_dir: str | None = None, verify: bool = False,
                          ) -> ReinforcedSplit:
    """The reinforcement shards listed in ``reinforce`` (a summary's ``reinforce``
    section; files relative to ``root``), aligned with ``parent``'s split by key, as
    read-only memmaps of a node-local cache.

    The cache lives in ``cache_dir/DIGEST/`` (default :func:`default_cache_dir`; see
    :func:`replay_digest`): built once, shard by shard (each shard's bytes checked
    against its summary sha256; memory: one shard plus its rows' pages), reused by every
    later load with the same inputs, rebuilt when missing or corrupt
    (:mod:`shardforge.stream.array_cache`; ``verify`` rehashes every cached byte).

    Raises ValueError naming a sample of the split that has no (or an incomplete set of)
    stored augmentations, or a shard that is not the one the summary lists.
    """
    from shardforge.augment import AugPolicy, param_dtype
    from shardforge.names import check_name, check_relative_path
    from shardforge.stream.array_cache import open_or_build

    where, fix = f"the reinforce section of {root}/summary.json", "rerun pipelines/reinforce.py"
    check_name(reinforce["split"], "split", where, fix)
    for rec in reinforce["files"]:
        check_relative_path(rec["path"], "file path", where, fix)
    policy = AugPolicy.from_dict(reinforce["policy"])
    index = parent.split(reinforce["split"])
    n, a, k = len(index), int(reinforce["num_augs"]), int(reinforce["top_k"])
    specs = {"params": ((n, a), param_dtype(policy)),
             "topk_indices": ((n, a, k), np.dtype(np.int16)),
             "topk_probs": ((n, a, k), np.dtype(np.float16))}
    digest = replay_digest(reinforce, index.key)
    folder = os.path.join(cache_dir or default_cache_dir(), digest[:32])

    def fill(open_writable) -> None:
        _fill_aligned(root, reinforce, index, policy, open_writable)

    arrays = open_or_build(folder, digest, specs, fill,
                           scratch={"filled": ((n, a), np.dtype(bool))}, verify=verify)
    return ReinforcedSplit(**arrays, cache=folder)


def _fill_aligned(root: str, reinforce: dict, index, policy, open_writable) -> None:
    """Write every reinforcement shard's rows at (position, aug) of the arrays being
    built, then check that every (sample, augmentation) was written."""
    from shardforge.augment import params_from_columns

    a, k, split = int(reinforce["num_augs"]), int(reinforce["top_k"]), reinforce["split"]
    position = {key: p for p, key in enumerate(index.key.tolist())}
    base = resolve(root)
    for rec in reinforce["files"]:
        data = base.join(rec["path"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != rec["sha256"]:
            raise ValueError(f"{rec['path']}: sha256 differs from the summary's; the "
                             "reinforcement changed or is corrupt: rerun "
                             "pipelines/reinforce.py")
        table = pq.ParquetFile(io.BytesIO(data)).read()
        del data
        keys = table["key"].combine_chunks().dictionary_encode()   # a lookup per sample
        known = np.array([position.get(key, -1) for key in keys.dictionary.to_pylist()],
                         np.int64)
        pos = known[keys.indices.to_numpy(zero_copy_only=False)]
        if (pos < 0).any():
            bad = keys.dictionary[int(np.flatnonzero(known < 0)[0])].as_py()
            raise ValueError(f"{rec['path']}: sample {bad!r} is not in the parent's "
                             f"{split} split; the reinforcement belongs to another dataset")
        aug = table["aug"].to_numpy().astype(np.int64)
        if ((aug < 0) | (aug >= a)).any():
            raise ValueError(f"{rec['path']}: augmentation numbers outside 0..{a - 1}; the "
                             "file does not match the summary's num_augs")
        if not len(pos):
            continue
        cols = {c: table[c].to_numpy() for c in table.column_names if c.startswith("aug_")}
        with open_writable() as out:
            out["params"][pos, aug] = params_from_columns(cols, policy)
            out["topk_indices"][pos, aug] = table["topk_indices"].combine_chunks().flatten(
                ).to_numpy().reshape(-1, k)
            out["topk_probs"][pos, aug] = table["topk_probs"].combine_chunks().flatten(
                ).to_numpy(zero_copy_only=False).reshape(-1, k)
            out["filled"][pos, aug] = True
    _check_filled(index, split, a, open_writable)
    pa.default_memory_pool().release_unused()   # the shards' Arrow buffers, back to the OS


def _check_filled(index, split: str, a: int, open_writable) -> None:
    """Raise ValueError naming the first sample with a (sample, augmentation) not written.

    Reads the ``filled`` mask in blocks of about ``_CHECK_BYTES``, each through its own
    mapping, so that the process maps one block of the mask at a time (mapping the whole
    mask kept 1 byte per item of file pages in the process's RSS: 0.5 GB for ImageNet+)."""
    step = max(1, _CHECK_BYTES // max(1, a))
    for lo in range(0, len(index), step):
        with open_writable() as out:
            block = out["filled"][lo:lo + step]
            rows = block.all(axis=1)
            if not rows.all():
                first = int(np.flatnonzero(~rows)[0])
                raise ValueError(
                    f"sample {index.key[lo + first]!r} of the {split} split has "
                    f"{int(block[first].sum())} of {a} stored augmentations; rerun "
                    "pipelines/reinforce.py to finish the reinforcement")
            del block


class ReplayStream(WdsStream):
    """:class:`WdsStream` over the parent's split that yields replayed stored views and
    their soft targets (see the module docstring). ``policy`` must be the one the records
    were sampled with; ``num_classes`` sizes the targets."""

    def __init__(self, parent: DatasetRef | str, stored: ReinforcedSplit, policy,
                 num_classes: int, split: str = "train", batch_size: int = 256, *,
                 p_reinforce: float = P_REINFORCE, **kwargs) -> None:
        from shardforge.formats.decode import CenterCrop

        kwargs.setdefault("transform", CenterCrop(policy.size))   # sizes only; unused
        super().__init__(parent, split, batch_size, with_ids=True, **kwargs)
        if len(stored.params) != len(self.index):
            raise ValueError(f"{len(stored.params)} reinforced samples for a split of "
                             f"{len(self.index)}; load them with load_reinforced_split")
        if not 0.0 <= p_reinforce <= 1.0:
            raise ValueError(f"p_reinforce must be in [0, 1], got {p_reinforce}")
        self.stored, self.policy, self.num_classes = stored, policy, num_classes
        self._fresh_policy = dataclasses.replace(policy, mixup_p=0.0, cutmix_p=0.0)
        self.p_reinforce = p_reinforce
        # first position per tar: rows are in (shard, offset) order (SplitIndex), so a
        # binary search (one pass per tar over every row took 0.1 s at 1.28M rows x 1,282
        # tars, ~11 s fitted at ImageNet-21k's 14M x 14k)
        self._first = np.searchsorted(self.index.shard,
                                      np.arange(len(self.index.shard_urls))).astype(np.int64)

    def image_slot_shape(self) -> None:
        """Replayed views are allocated by :meth:`_batch` itself: no reused buffers."""
        return None

    def _batch(self, reader: RangeReader, pos: np.ndarray, rng: np.random.Generator,
               shared: bool) -> tuple:
        from shardforge.augment import apply_params, sample_params
        from shardforge.variants.reinforce.transform import decode_stored

        idx = self.index
        blobs = reader.read(idx.shard[pos], idx.offset[pos], idx.size[pos])
        size = self.policy.size
        views = torch.empty((len(pos), 3, size, size), dtype=torch.uint8)
        if shared:
            views.share_memory_()
        labels = torch.from_numpy(idx.label[pos].astype(np.int64))
        stored = np.full(len(pos), -1, np.int64)       # the stored augmentation used, or -1
        for n, p in enumerate(pos.tolist()):
            image = decode_stored(blobs[n])
            if rng.random() >= self.p_reinforce:
                # a fresh view with a one-hot label: ml-dr's "original" sample, no mixing
                fresh = sample_params(self._fresh_policy, image.shape[1], image.shape[0],
                                      rng, 1)[0]
                views[n] = apply_params(image, fresh, self._fresh_policy)
                continue
            stored[n] = int(rng.integers(self.stored.num_augs))
            row = self.stored.params[p, stored[n]]
            partner = None
            if self.policy.mixing and int(row["partner"]) >= 0:
                q = int(self._first[idx.shard[p]]) + int(row["partner"])
                (blob,) = reader.read(idx.shard[[q]], idx.offset[[q]], idx.size[[q]])
                partner = decode_stored(blob)
            views[n] = apply_params(image, row, self.policy, partner=partner)
        return views, labels, self._targets(pos, stored, labels), torch.from_numpy(
            pos.astype(np.int64))

    def _targets(self, pos: np.ndarray, stored: np.ndarray, labels: torch.Tensor) -> torch.Tensor:
        """Per sample: the densified stored top-K of augmentation ``stored`` (one batched
        densification), or the one-hot label where ``stored`` is -1 (a fresh view)."""
        from shardforge.ops.soft_targets import densify_topk

        targets = torch.nn.functional.one_hot(labels, self.num_classes).float()
        use = np.flatnonzero(stored >= 0)
        if len(use):
            p, j = pos[use], stored[use]
            targets[torch.from_numpy(use)] = densify_topk(
                torch.from_numpy(self.stored.topk_indices[p, j]),
                torch.from_numpy(self.stored.topk_probs[p, j]), self.num_classes)
        return targets
