"""A catalog entry: one immutable build ``NAME@vVERSION``, and ``NAME[@VERSION]`` references."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from shardforge.catalog.errors import CatalogError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_VERSION_RE = re.compile(r"^v?([1-9][0-9]*)$")


@dataclass(frozen=True)
class Ref:
    """A parsed ``NAME[@VERSION]``: ``version`` None means the latest."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@v{self.version}"


def parse_ref(text: str) -> Ref:
    """Parse ``NAME``, ``NAME@latest``, ``NAME@v3`` or ``NAME@3``; CatalogError otherwise."""
    name, _, version = text.strip().partition("@")
    if not NAME_RE.match(name):
        raise CatalogError(f"dataset reference {text!r}: {name!r} is not a dataset name "
                           "(letters, digits, '_' and '-'); write NAME or NAME@vN")
    if not version or version == "latest":
        return Ref(name)
    match = _VERSION_RE.match(version)
    if not match:
        raise CatalogError(f"dataset reference {text!r}: version {version!r} is not vN "
                           f"(N >= 1) or 'latest'; write e.g. {name}@v1")
    return Ref(name, int(match.group(1)))


@dataclass(frozen=True)
class Build:
    """One registered build: provenance, contents and where every file is.

    ``formats`` follows the ingest ``summary.json`` layout: ``formats["wds"][split]`` is
    a list of ``{url, path, size, sha256, samples}`` (one per tar), ``formats["beton"][split]``
    one ``{url, path, size, sha256}``, ``formats["wids"][split]`` (builds since the wids
    index) the ``wids-shard-index-v1`` JSON beside the split's tars, one such record. ``splits[split]`` holds ``samples``, ``shards``,
    ``rejects`` and ``per_class`` (label -> count; ``classes[label]`` is its name).
    ``parent`` is the ``NAME@vN`` this build was made from (None for a build from a
    source), ``source`` the location its pipeline read. ``secrets`` maps secret
    parameter names to fingerprints; secret values are never stored. ``inputs`` maps the
    files the pipeline's parameters name to ``{location, digest[, file]}``
    (:mod:`shardforge.build.inputs`; None for builds registered without them).
    """

    name: str
    version: int
    created: str
    registered: str
    code_version: str
    pipeline: str
    card_hash: str | None
    parent: str | None
    source: str | None
    params: dict
    secrets: dict
    out: str
    classes: list
    splits: dict
    samples: int
    formats: dict
    index: dict | None
    rejects: dict
    bytes_per_sample: float
    job_hash: str | None
    build_id: str
    card: dict | None = None
    inputs: dict | None = None

    @property
    def ref(self) -> str:
        """``NAME@vVERSION``."""
        return f"{self.name}@v{self.version}"

    @property
    def origin(self) -> str | None:
        """What the build was made from: the parent reference, else the source location."""
        return self.parent or self.source

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field plus ``ref``."""
        return {"ref": self.ref, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Build:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def files(self) -> list[tuple[str, dict]]:
        """``(label, record)`` of every file with a recorded size and sha256."""
        return file_records(self.formats, self.index)


def file_records(formats: dict, index: dict | None) -> list[tuple[str, dict]]:
    """``(label, record)`` of WebDataset tars, .beton files, the wids shard indexes (builds
    from before them have none) and the index, in that order; labels are ``wds[SPLIT]``,
    ``beton[SPLIT]``, ``wids[SPLIT]`` and ``index``."""
    found = []
    for split, recs in sorted(formats.get("wds", {}).items()):
        found += [(f"wds[{split}]", r) for r in recs]
    for split, rec in sorted(formats.get("beton", {}).items()):
        found.append((f"beton[{split}]", rec))
    for split, rec in sorted(formats.get("wids", {}).items()):
        found.append((f"wids[{split}]", rec))
    if index:
        found.append(("index", index))
    return found
