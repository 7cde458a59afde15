"""Parameters of an ingest job and the file names it writes."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from shardforge.formats.beton import DEFAULT_PAGE_SIZE, check_page_size
from shardforge.formats.image import ImageParams
from shardforge.sources.base import ShardSpec, SourceOptions

if TYPE_CHECKING:
    from shardforge.build.transform import VariantSpec

FORMAT_VERSION = 1   # bump when shard bytes would change for the same inputs and parameters
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class IngestConfig:
    """Everything that decides an ingest's output (``ray_address``, ``strict``,
    ``keep_parts`` and ``workers_only`` do not). Registering the result is the caller's
    (:class:`~shardforge.build.hooks.BuildHooks`)."""

    source: str
    name: str
    out: str
    image: ImageParams = field(default_factory=ImageParams)
    source_options: SourceOptions = field(default_factory=SourceOptions)
    source_kind: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    strict: bool = False
    ray_address: str | None = None
    keep_parts: bool = False      # keep _work/*.beton after the merge (debugging)
    variant: VariantSpec | None = None   # transform the source (a parent dataset) on the way
    # False: the driver builds shards too while Ray starts its workers (engine.runner)
    workers_only: bool = False

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(f"dataset name {self.name!r} must be letters, digits, '_' or '-' "
                             "(no dots: it becomes part of WebDataset shard names)")
        check_page_size(self.page_size)


@dataclass(frozen=True)
class ShardJob:
    """What a shard task needs besides its spec (small, sent with every task)."""

    out: str
    name: str
    image: ImageParams
    source_options: SourceOptions
    page_size: int
    variant: VariantSpec | None = None

    def spec_hash(self, spec: ShardSpec) -> str:
        """Hash of everything that determines the shard's bytes: resume checks it."""
        fields = {"v": FORMAT_VERSION, "spec": spec.plain(), "image": asdict(self.image),
                  "src": asdict(self.source_options), "page": self.page_size, "name": self.name}
        if self.variant is not None:
            fields["variant"] = _variant_id(self.variant)
        blob = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


def _variant_id(variant: VariantSpec | None) -> dict | None:
    if variant is None:
        return None
    return {"name": variant.name, "params": variant.params, "splits": sorted(variant.splits),
            "group_by_class": variant.group_by_class}
