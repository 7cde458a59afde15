"""shardforge stage: every node gets a verified local copy that opens and loads like the
original; reruns keep what matches and copy only what is missing or damaged."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from helpers import ffcv_labels

from shardforge.catalog.stage import (
    StageError,
    stage_dataset,
    stage_on_this_node,
    staged_files,
    temp_name,
)
from shardforge.layout.dataset import open_dataset

pytestmark = pytest.mark.usefixtures("ray_local")


def _tree(root: str) -> dict[str, bytes]:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                out[os.path.relpath(os.path.join(d, n), root)] = f.read()
    return out


def test_stage_copies_verifies_and_resumes(demo_dataset, tmp_path):
    to = str(tmp_path / "staged")
    summary = json.load(open(os.path.join(demo_dataset, "summary.json")))
    wanted = {r["path"] for r in staged_files(summary)} | {"summary.json"}
    (report,) = stage_dataset(demo_dataset, to)
    assert set(report.copied) == wanted and not report.kept
    staged = _tree(to)
    assert set(staged) == wanted
    original = _tree(demo_dataset)
    assert all(staged[p] == original[p] for p in wanted)        # byte-identical copies
    ds, orig = open_dataset(to), open_dataset(demo_dataset)
    assert ds.url != orig.url
    assert ds.split("train").key.tolist() == orig.split("train").key.tolist()
    assert os.path.dirname(ds.split("train").shard_urls[0]).startswith(to)
    beton = os.path.join(to, summary["formats"]["beton"]["train"]["path"])
    assert ffcv_labels(beton) == orig.split("train").label.tolist()     # FFCV reads the copy

    (again,) = stage_dataset(demo_dataset, to)                        # idempotent
    assert not again.copied and set(again.kept) == wanted

    tar = sorted(p for p in wanted if p.endswith(".tar"))[0]
    with open(os.path.join(to, tar), "r+b") as f:                     # damage one copy
        f.seek(600)
        f.write(b"\xff")
    os.unlink(os.path.join(to, summary["index"]["path"]))             # lose another
    (repair,) = stage_dataset(demo_dataset, to)
    assert set(repair.copied) == {tar, summary["index"]["path"]}
    assert _tree(to) == staged


def test_a_source_that_does_not_match_its_record_is_not_staged(demo_dataset, tmp_path):
    src = str(tmp_path / "src")
    shutil.copytree(demo_dataset, src)
    summary = json.load(open(os.path.join(src, "summary.json")))
    tar = summary["formats"]["wds"]["train"][0]["path"]
    with open(os.path.join(src, tar), "r+b") as f:
        f.seek(700)
        f.write(b"\x00\x01")
    to = str(tmp_path / "staged")
    with pytest.raises(StageError, match=f"{os.path.basename(tar)}.*summary.json records"):
        stage_dataset(src, to)
    assert not os.path.exists(os.path.join(to, tar))                  # nothing renamed in
    assert not os.path.exists(os.path.join(to, "summary.json"))
    with pytest.raises(StageError, match="absolute path"):
        stage_dataset(src, "relative/dir")


def test_concurrent_nodes_use_their_own_temporaries(demo_dataset, tmp_path):
    """Nodes sharing ``--to`` write distinct temporaries; a node clears only its own
    leftovers of a killed run, never another node's copy in flight."""
    summary = json.load(open(os.path.join(demo_dataset, "summary.json")))
    files = staged_files(summary)
    to = str(tmp_path / "staged")
    dest = os.path.join(to, files[0]["path"])
    assert temp_name(dest, "a" * 56) != temp_name(dest, "b" * 56)
    os.makedirs(os.path.dirname(dest))
    theirs, mine = temp_name(dest, "b" * 56), temp_name(dest, "a" * 56) + "0"   # other pid
    for leftover in (theirs, mine):
        with open(leftover, "wb") as f:
            f.write(b"half a file")
    summary_bytes = open(os.path.join(demo_dataset, "summary.json"), "rb").read()
    report = stage_on_this_node(demo_dataset, files, summary_bytes, to, "a" * 56)
    assert report.ok and len(report.copied) == len(files) + 1
    assert not os.path.exists(mine)                                   # own leftover gone
    assert open(theirs, "rb").read() == b"half a file"                # the other node's kept
    os.unlink(theirs)
    original = _tree(demo_dataset)
    assert _tree(to) == {p: original[p] for p in _tree(to)}
    assert set(_tree(to)) == {r["path"] for r in files} | {"summary.json"}
