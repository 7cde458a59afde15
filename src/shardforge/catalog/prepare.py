"""What a card needs before its pipeline runs: its secrets read, its dataset-naming
parameters located, its hash, the digests of the files it names, and the demo source
generated (the builder's preparation, :mod:`shardforge.catalog.builder`)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from shardforge.build.inputs import Input, digests
from shardforge.build.pipeline import Pipeline
from shardforge.build.secrets import MIN_SECRET_CHARS, Secrets
from shardforge.catalog.cards import Card
from shardforge.catalog.entry import Build, parse_ref
from shardforge.catalog.errors import CardError
from shardforge.catalog.lookup import locate_if_named
from shardforge.storage import replace_durably

CARD_HASH_VERSION = 1
DEMO_MARKER = ".demo-spec.json"


def read_secrets(card: Card) -> Secrets:
    """The card's secret values, from the environment variables or files it names;
    CardError naming the card, the secret and the fix when one is missing or short."""
    values = {}
    for name, ref in card.secrets.items():
        where = f"pipeline.secrets.{name}"
        if ref.env:
            value = os.environ.get(ref.env, "")
            if not value:
                raise CardError(card.file, where, f"environment variable {ref.env} is not set",
                                f"export {ref.env}=SECRET (at least {MIN_SECRET_CHARS} random "
                                "characters) before building")
        else:
            path = Path(os.path.expanduser(ref.file or ""))
            try:
                value = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CardError(card.file, where, f"cannot read {path} ({exc.strerror})",
                                "create the file with the secret, readable by you only") from None
        if len(value) < MIN_SECRET_CHARS:
            raise CardError(card.file, where, f"the secret from {ref.describe()} has "
                            f"{len(value)} characters", f"use at least {MIN_SECRET_CHARS} random "
                            "characters (a short secret's fingerprint can be brute-forced)")
        values[name] = value
    return Secrets(values)


def input_digests(card: Card, pipeline: Pipeline, params: dict) -> dict[str, Input]:
    """The pipeline's input digests for ``params`` ({} when it declares none); CardError
    naming the card when a named file cannot be read."""
    if pipeline.inputs is None:
        return {}
    try:
        return dict(pipeline.inputs(dict(params)))
    except (ValueError, OSError) as exc:
        raise CardError(card.file, "pipeline.params", f"an input named there cannot be read "
                        f"({exc})", "fix the path, or create the file first (e.g. train the "
                        "observer or teacher the card names)") from None


def same_inputs(build: Build, inputs: Mapping[str, Input]) -> bool:
    """Whether ``build`` recorded exactly these input digests (none recorded = none)."""
    return digests(build.inputs or {}) == {n: i.digest for n, i in sorted(inputs.items())}


def hash_card(card: Card, params: dict, secrets: Secrets) -> str:
    """What identifies a card's build besides its origin and inputs: pipeline, parameters,
    formats, the kind of source and the secrets' fingerprints."""
    if card.source_kind == "demo":
        source = {"kind": "demo", "spec": card.source}
    elif card.source_kind == "dataset":
        source = {"kind": "dataset", "name": parse_ref(card.source).name}
    else:
        source = {"kind": "path"}
    blob = json.dumps({"v": CARD_HASH_VERSION, "pipeline": card.pipeline, "params": params,
                       "formats": sorted(card.formats), "source": source,
                       "secrets": secrets.fingerprints()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def demo_dir(home: Path, spec: dict) -> str:
    """Where the demo source of ``spec`` is generated: ``HOME/sources/demo/KEY``."""
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return str(home / "sources" / "demo" / key)


def materialise_demo(root: str | None, spec: dict, log: TextIO) -> None:
    """Generate the demo images into ``root`` unless a finished generation is recorded."""
    from shardforge.sources.demo import DemoSpec, generate_demo_data

    assert root is not None
    marker = Path(root) / DEMO_MARKER
    blob = json.dumps(spec, sort_keys=True)
    if marker.is_file() and marker.read_text() == blob:
        return
    print(f"demo source: generating {root}", file=log)
    generate_demo_data(root, DemoSpec(**spec))
    tmp = marker.with_name(f"{marker.name}.tmp{os.getpid()}")
    tmp.write_text(blob)
    replace_durably(str(tmp), str(marker))


def located_params(params: Mapping, pipeline: Pipeline, home: str | os.PathLike | None) -> dict:
    """``params`` with each ``Param.dataset`` value that is a catalog name replaced by the
    location of that build in the catalog at ``home`` (:func:`locate_if_named`)."""
    return {name: locate_if_named(value, home)
            if name in pipeline.params and pipeline.params[name].dataset
            and isinstance(value, str) else value
            for name, value in params.items()}
