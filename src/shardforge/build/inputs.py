"""Content digests of the files a pipeline reads by path: what makes reuse content-aware.

A card's parameters may name files whose *content* decides the output (an observer
checkpoint, teacher weights, a training recipe, AdaIN weights, a style directory). A
pipeline declares them with ``inputs(params) -> {name: Input}`` (see
:class:`shardforge.build.pipeline.Pipeline`); the builder computes them once on the
driver before deciding anything, records them in the build (``Build.inputs``), reuses a
build only when every recorded digest equals the current one, and folds them into the
build's output directory key, so a changed input never reuses (or overwrites) the shards
made with the old one. Secrets are not inputs: their fingerprints are already part of the
card hash.

Digests: ``sha256:HEX`` of a file's bytes (checkpoints and weights: tens to hundreds of
MB, a fraction of a second); ``stat-sha256:HEX`` of a local directory's listing (relative
path, size, mtime in ns of every file: no file is read, so an 80k-image style directory
costs one ``os.walk``; touching a file without changing it counts as a change);
``summary-sha256:HEX`` of a dataset's ``summary.json`` (which records every file's
sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shardforge.models.reference import SORTED, ObserverRef
from shardforge.storage import resolve


@dataclass(frozen=True)
class Input:
    """One input of a build: ``location`` as the card names it, ``digest`` of its content
    (``KIND:HEX``), ``file`` the file it resolved to when that differs (a run directory's
    newest ``state.pt``)."""

    location: str
    digest: str
    file: str | None = None

    def to_dict(self) -> dict:
        """The JSON form recorded in the catalog."""
        out = {"location": self.location, "digest": self.digest}
        if self.file is not None and self.file != self.location:
            out["file"] = self.file
        return out


def file_input(path: str) -> Input:
    """``sha256`` of the file at ``path`` (local path or URL). FileNotFoundError naming
    ``path`` when it does not exist."""
    loc = resolve(path)
    if not loc.exists():
        raise FileNotFoundError(f"{path!r} does not exist")
    return Input(path, "sha256:" + loc.sha256())


def checkpoint_input(path: str) -> Input:
    """``sha256`` of the ``state.pt`` a jobs/train.py checkpoint reference resolves to (a
    run directory: its newest checkpoint, as the pipelines load it)."""
    from shardforge.models.checkpoint import find_state_file

    url = find_state_file(path)
    return Input(path, "sha256:" + resolve(url).sha256(), url)


def tree_input(path: str, suffixes: tuple[str, ...] = ()) -> Input:
    """A digest of the local directory ``path`` from its files' relative paths, sizes and
    modification times (nothing is read); only names ending in ``suffixes`` (compared in
    lower case) when given. NotADirectoryError naming ``path`` otherwise."""
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise NotADirectoryError(f"{path!r} is not a directory")
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if suffixes and not name.lower().endswith(suffixes):
                continue
            full = os.path.join(dirpath, name)
            st = os.stat(full)
            h.update(f"{os.path.relpath(full, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return Input(path, "stat-sha256:" + h.hexdigest())


def dataset_input(location: str) -> Input:
    """A digest of the dataset at ``location``: the sha256 of its ``summary.json``, which
    lists every file with its sha256."""
    from shardforge.layout.dataset import dataset_location
    from shardforge.layout.files import SUMMARY_FILE

    summary = resolve(dataset_location(location)).join(SUMMARY_FILE)
    return Input(location, "summary-sha256:" + summary.sha256(), summary.url)


def recorded(inputs: Mapping[str, Input]) -> dict[str, dict]:
    """``{name: {location, digest[, file]}}``, sorted: what a build records."""
    return {name: inputs[name].to_dict() for name in sorted(inputs)}


def digests(inputs: Mapping[str, Mapping]) -> dict[str, str]:
    """``{name: digest}`` of recorded inputs (the part that decides reuse)."""
    return {name: rec["digest"] for name, rec in sorted(inputs.items())}


def inputs_key(inputs: Mapping[str, Input]) -> str:
    """A hex digest of every input's name and digest ('' when there are none)."""
    if not inputs:
        return ""
    blob = json.dumps({n: i.digest for n, i in inputs.items()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def changes(before: Mapping[str, Mapping] | None, now: Mapping[str, Input]) -> list[str]:
    """Human-readable differences between a build's recorded inputs and the current ones,
    e.g. ``observer data/runs/x changed (sha256 3f2a9c1b… -> 9e01d2aa…)``; empty when equal.
    A build that recorded no inputs (made before inputs were recorded) differs from any
    non-empty ``now``."""
    if before is None:
        return [f"the build recorded no digest of its input(s) {', '.join(sorted(now))}"] \
            if now else []
    lines = []
    for name in sorted(set(before) | set(now)):
        old, new = before.get(name), now.get(name)
        if new is None:
            lines.append(f"{name} {old['location']} is no longer an input")
        elif old is None:
            lines.append(f"{name} {new.location} is a new input")
        elif old["digest"] != new.digest:
            where = (new.location if old["location"] == new.location
                     else f"{old['location']} -> {new.location}")
            lines.append(f"{name} {where} changed ({_short(old['digest'])} -> "
                         f"{_short(new.digest)})")
    return lines


def _short(digest: str) -> str:
    kind, _, hexdigest = digest.partition(":")
    return f"{kind} {hexdigest[:12]}…"


def model_inputs(ref: ObserverRef, name: str) -> dict:
    """The inputs of the model reference ``ref`` (:mod:`shardforge.models.reference`):
    ``name`` -> the checkpoint's resolved ``state.pt`` (a run directory: its newest) or
    the weights file, and ``name_classes`` -> a class-list file (not for ``sorted``)."""
    if ref.is_checkpoint:
        return {name: checkpoint_input(ref.location)}
    assert ref.weights is not None
    out = {name: file_input(ref.weights)}
    if ref.classes and ref.classes != SORTED:
        out[f"{name}_classes"] = file_input(ref.classes)
    return out
