"""Registering a finished build: summary + provenance -> an immutable ``NAME@vN`` entry."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Mapping

from shardforge.build.secrets import Secrets
from shardforge.catalog.entry import NAME_RE, Build, file_records, parse_ref
from shardforge.catalog.errors import RegistrationError
from shardforge.catalog.home import code_version
from shardforge.catalog.shared import entry_location, write_entry
from shardforge.catalog.store import Store

_log = logging.getLogger(__name__)

REQUIRED_SUMMARY_KEYS = ("out", "splits", "samples", "formats", "index", "rejects",
                         "bytes_per_sample")
_RECORD_KEYS = ("url", "size", "sha256")


def register_build(home: str | os.PathLike | None, name: str, summary: Mapping, *,
                   card_hash: str | None = None, parent: str | None = None,
                   pipeline: str = "ingest", params: Mapping | None = None,
                   secret_params: Mapping[str, str] | None = None,
                   card: Mapping | None = None, source: str | None = None,
                   inputs: Mapping[str, Mapping] | None = None) -> Build:
    """Register the complete build described by ``summary`` (the ``summary.json`` layout).

    Call it only after the build committed (its ``summary.json`` written): a failed or
    interrupted build has no summary and is never registered. ``parent`` is the
    ``NAME@vN`` the build was made from; ``source`` (default ``summary["source"]``) the
    location its pipeline read. ``params`` default to ``summary["params"]``.
    ``secret_params`` (name -> value) are stored as fingerprints only, and any copy of a
    secret value elsewhere in the entry is replaced by its fingerprint. ``inputs``: the
    content digests of the files the parameters name (:func:`shardforge.build.inputs.
    recorded`), part of the build's identity.

    Idempotent: a registration identical in provenance and file contents to an existing
    build returns that build; otherwise the build gets the next version of ``name``
    (v1, v2, ...), allocated atomically across processes.

    The entry is also written next to the outputs, ``OUT/catalog-entry.json``
    (:func:`~shardforge.catalog.shared.write_entry`; local or s3://), for other homes'
    ``shardforge catalog sync``; when that write fails the registration stands and a
    warning (logged) names the file and the fix.
    """
    if not NAME_RE.match(name):
        raise RegistrationError(f"dataset name {name!r} is not letters, digits, '_' or '-'; "
                                "rename the dataset")
    _check_summary(name, summary)
    if parent is not None:
        ref = parse_ref(parent)
        if ref.version is None:
            raise RegistrationError(f"parent {parent!r} of {name} has no version; "
                                    "give the exact NAME@vN it was built from")
        parent = str(ref)
    secrets = secret_params if isinstance(secret_params, Secrets) else Secrets(secret_params)
    source = _normalise(source if source is not None else summary.get("source"))
    fields = secrets.scrub({
        "name": name,
        "created": summary.get("created") or _now(),
        "code_version": code_version(),
        "pipeline": pipeline,
        "card_hash": card_hash,
        "parent": parent,
        "source": source,
        "params": dict(params if params is not None else summary.get("params") or {}),
        "out": summary["out"],
        "classes": list(summary.get("classes") or []),
        "splits": summary["splits"],
        "samples": int(summary["samples"]),
        "formats": summary["formats"],
        "index": summary["index"],
        "rejects": summary["rejects"],
        "bytes_per_sample": summary["bytes_per_sample"],
        "job_hash": summary.get("job_hash"),
        "card": dict(card) if card is not None else None,
        "inputs": dict(inputs) if inputs else None,
    })
    fields["secrets"] = secrets.fingerprints()
    build_id = _build_id(fields)

    def make(version: int) -> Build:
        return Build(version=version, registered=_now(), build_id=build_id, **fields)

    build, _created = Store(home).insert(name, build_id, make)
    problem = write_entry(build)
    if problem:
        _log.warning("warning: %s is registered, but its catalog entry could not be "
                     "written next to its outputs (%s: %s); other catalog homes cannot "
                     "`shardforge catalog sync` it until `shardforge catalog register %s` "
                     "writes it", build.ref, entry_location(build.out).url, problem,
                     build.out)
    return build


def _build_id(fields: dict) -> str:
    """Identity of a build: provenance and file contents (not times or code version)."""
    files = sorted((label, rec.get("path") or rec["url"], rec["size"], rec["sha256"])
                   for label, rec in file_records(fields["formats"], fields["index"]))
    identity = {k: fields[k] for k in ("name", "pipeline", "card_hash", "parent", "source",
                                       "params", "secrets", "out", "job_hash")}
    if fields.get("inputs"):    # absent when empty: ids of builds without inputs unchanged
        identity["inputs"] = fields["inputs"]
    identity["files"] = files
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _check_summary(name: str, summary: Mapping) -> None:
    missing = [k for k in REQUIRED_SUMMARY_KEYS if k not in summary]
    if missing:
        raise RegistrationError(
            f"summary of {name} lacks {', '.join(missing)}: only a complete build's "
            "summary.json can be registered (a failed or interrupted build has none); "
            "rerun the build")
    records = [rec for _label, rec in file_records(summary["formats"], summary["index"])]
    for rec in records:
        absent = [k for k in _RECORD_KEYS if k not in rec]
        if absent:
            raise RegistrationError(f"summary of {name}: file record {rec} lacks "
                                    f"{', '.join(absent)}; rerun the build to rewrite it")
    if not records:
        raise RegistrationError(f"summary of {name} lists no files; a build must write "
                                "at least one shard")


def _normalise(location: str | None) -> str | None:
    """Absolute form of a local path (URLs unchanged, no network access)."""
    if not location or "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
