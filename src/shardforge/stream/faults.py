"""What the WebDataset loader does with a corrupt sample at training time.

Policy (``on_corrupt``, :data:`ON_CORRUPT`):

* ``"skip"`` (default): the sample is left out and **replaced**, so that every rank still
  yields exactly the batches it would have yielded (under DDP a rank that yields fewer
  batches leaves the others waiting in a collective forever). Replacement rule: the
  bad sample's slot takes the next good sample of the same batch (cyclically: slot ``k``
  takes ``k+1``, ``k+2``, ...), pixels, label, id and key together, so the pair stays
  consistent and no loss needs a mask. When every sample of the batch is bad, the slot
  takes the first good sample after the batch in the rank's epoch order (cyclically),
  cropped with a generator seeded by ``(seed, epoch, rank, slot)``. Both rules depend
  only on the epoch's plan, so they do not change with the number of workers and a
  resumed epoch repeats them. Why this rule: dropping the sample would shorten a batch
  (and, when a whole batch is lost, the rank's epoch); a black image with its label
  masked out would need a mask in every loss (label smoothing, stored soft targets, a
  teacher, CutMix); a good sample of the same batch is already decoded, so the repeat
  costs a copy, and its only effect is that one sample weighs twice in one step.
  The skipped sample is counted and its key kept (the first
  :data:`MAX_KEYS` per epoch): :class:`~shardforge.stream.wds_loader.WdsLoader` reports
  them (``loader.faults``, its ``state_dict``) and the training loop writes them into
  each epoch's ``metrics.jsonl`` line and console line.
* ``"strict"``: the first corrupt sample raises :class:`CorruptSampleError`, naming the
  shard, the key, the byte range and the fix.

A sample is *corrupt* when its bytes do not match the index's sha256 (with ``verify``,
on by default) or do not decode to the size the index gives. A shard that is missing or
shorter than the index says is not a sample fault: it raises
:class:`~shardforge.layout.reader.ShardReadError` in either mode.

In a training run (``data.on_corrupt``, ``data.verify``), each epoch's ``metrics.jsonl``
record has ``skipped_samples`` / ``skipped_keys`` (train) and ``val_skipped_samples`` /
``val_skipped_keys``, summed over ranks; the epoch's console line ends with them when
any. The other loaders: Ray Data drops undecodable rows (``streaming_split(equal=True)``
keeps the workers equal; not counted in the metrics; no sha256 check); FFCV cannot skip
or even notice a corrupt JPEG inside its compiled pipeline (see
:mod:`shardforge.stream.ffcv_loader`): its guards are the .beton size check at start and
``shardforge catalog verify``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ON_CORRUPT: tuple[str, ...] = ("skip", "strict")
MAX_KEYS = 8            # keys of skipped samples kept per epoch report
CHECKSUM, UNDECODABLE = 1, 2
REASONS = {CHECKSUM: "checksum", UNDECODABLE: "decode"}
FIX = ("check the dataset with `shardforge catalog verify {name}` and rebuild the damaged "
       "shard (rerun the same ingest: it rebuilds shards whose files fail their check) or "
       "re-stage it from a good copy")


class CorruptSampleError(ValueError):
    """A sample's bytes are corrupt and the policy is ``strict`` (or nothing is left to
    replace it with)."""


def check_policy(on_corrupt: str) -> str:
    """``on_corrupt`` if it is one of :data:`ON_CORRUPT`, else ``ValueError``."""
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt {on_corrupt!r} is not one of {ON_CORRUPT}")
    return on_corrupt


def fix(dataset: str = "") -> str:
    """The fix for corrupt data of ``dataset`` (its catalog name, when known)."""
    return FIX.format(name=dataset or "NAME")


def strict_message(key: str, shard_url: str, offset: int, size: int, reason: str,
                   dataset: str = "") -> str:
    """One line: which sample, where, what is wrong, and the fix."""
    return (f"corrupt sample {key} in shard {shard_url} (bytes {offset}+{size}): {reason}; "
            f"{fix(dataset)}; or train on with on_corrupt=skip (the default; "
            "data.on_corrupt in a training config), which skips and reports it")


def next_good(bad: list[bool], k: int) -> int | None:
    """The slot that replaces bad slot ``k``: the first good slot after ``k``, cyclically;
    ``None`` when every slot is bad."""
    n = len(bad)
    for step in range(1, n):
        j = (k + step) % n
        if not bad[j]:
            return j
    return None


@dataclass
class FaultReport:
    """Corrupt samples skipped in one epoch: how many, by reason, and the first keys."""

    count: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    def add(self, key: str, reason: str) -> None:
        """Count one skipped sample."""
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if len(self.keys) < MAX_KEYS:
            self.keys.append(key)

    def to_dict(self) -> dict:
        return {"count": self.count, "by_reason": dict(self.by_reason), "keys": list(self.keys)}

    @classmethod
    def from_dict(cls, d: dict | None) -> FaultReport:
        """The report ``to_dict`` gave (an empty one for ``None``)."""
        d = d or {}
        return cls(int(d.get("count", 0)), {str(k): int(v) for k, v in
                                            dict(d.get("by_reason", {})).items()},
                   [str(k) for k in d.get("keys", [])][:MAX_KEYS])
