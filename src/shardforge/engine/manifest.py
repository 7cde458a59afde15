"""Shard manifests: what makes a shard "complete" for resume, shared by every sharded job.

A manifest (written last, atomically) holds the shard's spec hash and its result, whose
``files`` map a role to ``{size, sha256}``. A shard is complete only when the spec hash
matches and every recorded file re-hashes to what was recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from shardforge.storage import Location


def write_manifest(manifest: Location, spec_hash: str, result: Mapping) -> None:
    """Write ``{spec_hash, result}`` to ``manifest`` (temp name, then rename)."""
    manifest.write_bytes_atomic(json.dumps({"spec_hash": spec_hash, "result": result},
                                           sort_keys=True).encode())


def verified_result(manifest: Location, spec_hash: str,
                    files: Mapping[str, Location]) -> dict | None:
    """The recorded result when the manifest's spec hash is ``spec_hash`` and every file in
    ``result["files"]`` (role -> {size, sha256}, located by ``files[role]``) verifies; else
    None: a missing, unreadable or damaged manifest (not JSON, or JSON of another shape:
    no result, ``files`` not a mapping, a role not in ``files``, a size that is not an
    int), other parameters, or a damaged or missing file. Never raises for a bad manifest."""
    try:
        data = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("spec_hash") != spec_hash:
        return None
    result = data.get("result")
    if not isinstance(result, dict) or not records_verify(result.get("files"), files):
        return None
    return result


def records_verify(records: object, files: Mapping[str, Location]) -> bool:
    """Whether ``records`` (role -> {size, sha256}) is a non-empty mapping of well-formed
    records, each naming a role in ``files`` whose file has exactly that size and sha256.
    A malformed record (wrong types, unknown role) counts as not verified."""
    if not isinstance(records, dict) or not records:
        return False
    for role, rec in records.items():
        if role not in files or not record_verifies(rec, files[role]):
            return False
    return True


def record_verifies(rec: object, loc: Location) -> bool:
    """Whether ``rec`` is ``{size: int, sha256: str, ...}`` and ``loc`` has that size and sha256
    (the size is checked first, so a truncated file costs no hashing)."""
    if not isinstance(rec, dict):
        return False
    size, sha = rec.get("size"), rec.get("sha256")
    if type(size) is not int or not isinstance(sha, str):
        return False
    try:
        return loc.size() == size and loc.sha256() == sha
    except OSError:     # vanished or unreadable between the two calls
        return False
