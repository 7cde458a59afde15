"""The dataset as training sees it (:class:`DatasetInfo`: small, shipped to every worker),
made from the one summary reader (:func:`shardforge.layout.dataset.read_summary`) that
:class:`~shardforge.layout.dataset.DatasetRef` uses too."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from shardforge.names import check_name


@dataclass(frozen=True)
class DatasetInfo:
    """What training needs to know about a dataset, small enough to ship to every worker.

    ``url``: the dataset root (path or URL); ``betons``: split -> location of
    ``beton/NAME-SPLIT.beton``; ``tars``: split -> WebDataset tar locations in shard order;
    ``counts``: split -> number of samples. Locations are derived from ``url`` and the
    relative paths in ``summary.json``, so a copied dataset still resolves.
    """

    url: str
    name: str
    classes: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    betons: dict[str, str] = field(default_factory=dict)
    tars: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: A reinforced dataset's ``reinforce`` summary section plus ``root`` (its location);
    #: the other fields then describe the parent, whose images it replays.
    reinforce: dict | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def require_split(self, split: str) -> None:
        """Raise ValueError naming the splits there are when ``split`` is missing."""
        if split not in self.counts:
            raise ValueError(f"dataset {self.name!r} ({self.url}) has no {split!r} split; it has "
                             f"{sorted(self.counts)}. Ingest a source with train/ and val/ folders")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DatasetInfo:
        return cls(url=data["url"], name=data["name"], classes=tuple(data["classes"]),
                   counts=dict(data["counts"]), betons=dict(data["betons"]),
                   tars={k: tuple(v) for k, v in data["tars"].items()},
                   reinforce=data.get("reinforce"))


def load_dataset_info(location: str) -> DatasetInfo:
    """Read the ``summary.json`` of the dataset at ``location`` (a catalog name is resolved
    first by the caller: :func:`shardforge.catalog.lookup.resolve_dataset`).

    A reinforced dataset (``pipelines/reinforce.py``) gives its parent's info (the images
    it replays) under its own name, with ``reinforce`` set."""
    from shardforge.layout.dataset import read_summary

    summary = read_summary(location)
    data, root = summary.data, summary.root
    if "reinforce" in data:
        parent = load_dataset_info(data["parent_out"])
        return dataclasses.replace(parent, name=summary.name,
                                   reinforce={**data["reinforce"], "root": root.url,
                                              "parent_name": parent.name})
    classes = tuple(data.get("classes") or ())
    if not classes:
        raise ValueError(f"{summary.where} lists no classes; re-run the ingest")
    formats = data.get("formats", {})

    def path(split: str, rec: dict) -> str:
        check_name(split, "split", summary.where, "re-run the ingest that wrote it")
        return summary.location(rec["path"]).url

    betons = {split: path(split, rec) for split, rec in formats.get("beton", {}).items()}
    tars = {split: tuple(path(split, r) for r in recs)
            for split, recs in formats.get("wds", {}).items()}
    counts = {split: int(s["samples"]) for split, s in data.get("splits", {}).items()}
    return DatasetInfo(url=root.url, name=summary.name, classes=classes,
                       counts=counts, betons=betons, tars=tars)
