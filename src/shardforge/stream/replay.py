"""Replay a reinforced dataset (ImageNet+): the parent's images, a stored augmentation
per sample and epoch, rebuilt pixel-exactly, with the teacher's densified soft target.

Per sample and epoch (Faghri et al., ICCV 2023, Sec. 3.2): with probability
``p_reinforce`` (0.99) one of the ``num_augs`` stored augmentation records is picked
uniformly at random, replayed on the parent image (:func:`shardforge.variants.augment.
apply_params`) and paired with its stored top-K probabilities, densified by spreading
``1 - sum(top-K)`` evenly over the other classes; otherwise a fresh augmentation from the
same policy is drawn and paired with the one-hot label. Partitioning, equal per-rank
counts, seeding and mid-epoch resume are :class:`~shardforge.stream.wds_loader.WdsStream`'s.

Batches are ``(views, labels, targets, ids)``: uint8 ``B x 3 x S x S`` views, int64
labels, float32 ``B x C`` targets and each sample's position in the split.

The stored records of the whole split are loaded into memory per loader worker (about
``num_augs * 68`` bytes per image with the default policy and K=10: fine at demo and
ImageNet-100 scale; a full ImageNet+ with 400 augmentations would need ~35 GB per worker,
for which per-shard loading is still to come).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch

from shardforge.storage import resolve
from shardforge.stream.dataset import DatasetRef, open_dataset
from shardforge.stream.reader import RangeReader
from shardforge.stream.wds_loader import WdsStream

P_REINFORCE = 0.99   # ImageNet+ Sec. 3.2: a stored augmentation with probability 0.99


@dataclass(frozen=True)
class ReinforcedSplit:
    """A split's stored augmentations, aligned with the parent split's positions.

    ``params``: structured records ``[N, A]``; ``topk_indices`` int16 ``[N, A, K]``;
    ``topk_probs`` float16 ``[N, A, K]``.
    """

    params: np.ndarray
    topk_indices: np.ndarray
    topk_probs: np.ndarray

    @property
    def num_augs(self) -> int:
        return self.params.shape[1]


def load_reinforced_split(root: str, reinforce: dict, parent: DatasetRef) -> ReinforcedSplit:
    """Read the reinforcement shards listed in ``reinforce`` (a summary's ``reinforce``
    section; files relative to ``root``) and align them with ``parent``'s split by key.

    Raises ValueError naming a sample of the split that has no (or an incomplete set of)
    stored augmentations.
    """
    from shardforge.variants.augment import AugPolicy, param_dtype, params_from_columns

    policy = AugPolicy.from_dict(reinforce["policy"])
    index = parent.split(reinforce["split"])
    n, a, k = len(index), int(reinforce["num_augs"]), int(reinforce["top_k"])
    position = {key: p for p, key in enumerate(index.key.tolist())}

    params = np.zeros((n, a), param_dtype(policy))
    idx = np.zeros((n, a, k), np.int16)
    prob = np.zeros((n, a, k), np.float16)
    filled = np.zeros((n, a), bool)
    base = resolve(root)
    for rec in reinforce["files"]:
        table = pq.read_table(io.BytesIO(base.join(rec["path"]).read_bytes()))
        keys = table["key"].to_pylist()
        pos = np.array([position.get(key, -1) for key in keys], np.int64)
        if (pos < 0).any():
            bad = keys[int(np.flatnonzero(pos < 0)[0])]
            raise ValueError(f"{rec['path']}: sample {bad!r} is not in the parent's "
                             f"{reinforce['split']} split; the reinforcement belongs to "
                             "another dataset")
        aug = table["aug"].to_numpy()
        cols = {c: table[c].to_numpy() for c in table.column_names if c.startswith("aug_")}
        params[pos, aug] = params_from_columns(cols, policy)
        idx[pos, aug] = table["topk_indices"].combine_chunks().flatten().to_numpy(
            ).reshape(-1, k)
        prob[pos, aug] = table["topk_probs"].combine_chunks().flatten().to_numpy(
            zero_copy_only=False).reshape(-1, k)
        filled[pos, aug] = True
    if not filled.all():
        missing = int(np.flatnonzero(~filled.all(axis=1))[0])
        raise ValueError(f"sample {index.key[missing]!r} of the {reinforce['split']} split has "
                         f"{int(filled[missing].sum())} of {a} stored augmentations; rerun "
                         "pipelines/reinforce.py to finish the reinforcement")
    return ReinforcedSplit(params, idx, prob)


class ReplayStream(WdsStream):
    """:class:`WdsStream` over the parent's split that yields replayed stored views and
    their soft targets (see the module docstring). ``policy`` must be the one the records
    were sampled with; ``num_classes`` sizes the targets."""

    def __init__(self, parent: DatasetRef | str, stored: ReinforcedSplit, policy,
                 num_classes: int, split: str = "train", batch_size: int = 256, *,
                 p_reinforce: float = P_REINFORCE, **kwargs) -> None:
        from shardforge.stream.decode import CenterCrop

        kwargs.setdefault("transform", CenterCrop(policy.size))   # sizes only; unused
        super().__init__(open_dataset(parent), split, batch_size, with_ids=True, **kwargs)
        if len(stored.params) != len(self.index):
            raise ValueError(f"{len(stored.params)} reinforced samples for a split of "
                             f"{len(self.index)}; load them with load_reinforced_split")
        if not 0.0 <= p_reinforce <= 1.0:
            raise ValueError(f"p_reinforce must be in [0, 1], got {p_reinforce}")
        self.stored, self.policy, self.num_classes = stored, policy, num_classes
        self.p_reinforce = p_reinforce
        first = np.zeros(len(self.index.shard_urls), np.int64)   # first position per tar
        for s in range(len(first)):
            first[s] = int(np.argmax(self.index.shard == s))
        self._first = first

    def _batch(self, reader: RangeReader, pos: np.ndarray, rng: np.random.Generator,
               shared: bool) -> tuple:
        from shardforge.variants.augment import apply_params, partner_view, sample_params
        from shardforge.variants.reinforce import decode_stored

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
            if rng.random() < self.p_reinforce:
                stored[n] = int(rng.integers(self.stored.num_augs))
                row = self.stored.params[p, stored[n]]
            else:
                row = sample_params(self.policy, image.shape[1], image.shape[0], rng, 1)[0]
            partner = None
            if self.policy.mixing and int(row["partner"]) >= 0:
                q = int(self._first[idx.shard[p]]) + int(row["partner"])
                (blob,) = reader.read(idx.shard[[q]], idx.offset[[q]], idx.size[[q]])
                partner = partner_view(decode_stored(blob), self.policy)
            views[n] = apply_params(image, row, self.policy, partner=partner)
        return views, labels, self._targets(pos, stored, labels), torch.from_numpy(
            pos.astype(np.int64))

    def _targets(self, pos: np.ndarray, stored: np.ndarray, labels: torch.Tensor) -> torch.Tensor:
        """Per sample: the densified stored top-K of augmentation ``stored`` (one batched
        densification), or the one-hot label where ``stored`` is -1 (a fresh view)."""
        from shardforge.train.targets import densify_topk

        targets = torch.nn.functional.one_hot(labels, self.num_classes).float()
        use = np.flatnonzero(stored >= 0)
        if len(use):
            p, j = pos[use], stored[use]
            targets[torch.from_numpy(use)] = densify_topk(
                torch.from_numpy(self.stored.topk_indices[p, j]),
                torch.from_numpy(self.stored.topk_probs[p, j]), self.num_classes)
        return targets
