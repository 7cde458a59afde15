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
    None (missing or unreadable manifest, other parameters, damaged or missing file)."""
    try:
        data = json.loads(manifest.read_bytes())
    except (OSError, ValueError):
        return None
    if data.get("spec_hash") != spec_hash:
        return None
    for role, rec in data["result"]["files"].items():
        loc = files[role]
        if loc.size() != rec["size"] or loc.sha256() != rec["sha256"]:
            return None
    return data["result"]
