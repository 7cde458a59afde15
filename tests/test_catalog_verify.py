"""``catalog verify`` at scale: ``--quick`` (sizes and structure, no hashing) catches
truncated and damaged tars, damaged .beton tables, wids indexes and parquet footers; the
full verify still catches a flipped byte; a progress line on stderr; hashing on Ray tasks
when Ray is initialised, else on local threads."""

from __future__ import annotations

import json
import os
import shutil
import tarfile

import pytest

from shardforge import catalog
from shardforge.catalog.register import register_build
from shardforge.cli import main


@pytest.fixture
def build(demo_dataset, tmp_path, monkeypatch):
    """A copy of the session's demo dataset registered as demo@v1 in a home of its own
    (``(home, out)``); no RAY_ADDRESS, so hashing runs where the test says."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "out"
    shutil.copytree(demo_dataset, out, ignore=shutil.ignore_patterns("_work"))
    summary = json.loads((out / "summary.json").read_text())
    register_build(tmp_path / "home", "demo", {**summary, "out": str(out)})
    return str(tmp_path / "home"), out


def _verify(home: str, quick: bool):
    return catalog.verify("demo", home=home, quick=quick)


def _labels(report) -> list[tuple[str, str]]:
    return [(p.label, p.problem) for p in report.problems]


def _patch(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def test_quick_verify_passes_and_shows_progress(build, capsys):
    home, _out = build
    report = _verify(home, quick=True)
    assert report.ok and report.mode == "quick" and report.hashed_on == "none"
    files = report.checked
    assert main(["catalog", "verify", "demo", "--quick", "--home", home]) == 0
    captured = capsys.readouterr()
    assert "(sizes and structure): ok" in captured.out
    assert f"verify demo@v1 --quick: {files}/{files} files | {report.bytes:,} bytes" in \
        captured.err
    assert main(["catalog", "verify", "demo", "--home", home, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["ok"] and result["mode"] == "full" and result["hashed_on"] == "threads"
    assert f"verify demo@v1: {files}/{files} files" in captured.err


def test_quick_verify_catches_a_truncated_tar(build):
    home, out = build
    tar = out / "wds" / "demo-train-000001.tar"
    os.truncate(tar, tar.stat().st_size - 512)
    assert _labels(_verify(home, quick=True)) == [
        ("wds[train]", f"size {tar.stat().st_size:,} B, expected "
                       f"{tar.stat().st_size + 512:,} B (truncated or overwritten)")]


def test_quick_verify_catches_a_damaged_tar_header_of_the_same_size(build):
    home, out = build
    tar = out / "wds" / "demo-val-000000.tar"
    with tarfile.open(tar) as t:
        member = t.getmembers()[4]
    _patch(tar, member.offset, b"XX")           # the member's name: its checksum fails
    (problem,) = _verify(home, quick=True).problems
    assert problem.label == "wds[val]"
    assert f"tar member header at byte {member.offset:,} is damaged (checksum" in \
        problem.problem


@pytest.mark.parametrize("where, needle", [
    ("version", "not a .beton v2 file"),
    ("num_samples", "samples, more than its"),
    ("alloc_ids", "does not list each sample once"),
])
def test_quick_verify_catches_a_corrupted_beton_header(build, where, needle):
    from shardforge.formats.beton import ALLOC, read_part

    home, out = build
    beton = out / "beton" / "demo-train.beton"
    head = read_part(str(beton))
    if where == "version":
        _patch(beton, 0, b"\x07\x00")
    elif where == "num_samples":
        _patch(beton, 8, (10 ** 9).to_bytes(8, "little"))
    else:                                       # two rows name sample 0
        _patch(beton, head.alloc_ptr + ALLOC.itemsize, (0).to_bytes(8, "little"))
    (problem,) = _verify(home, quick=True).problems
    assert problem.label == "beton[train]" and needle in problem.problem, problem
    assert problem.problem.endswith("(damaged)")


def test_quick_verify_catches_a_damaged_parquet_footer(build):
    home, out = build
    index = out / "index.parquet"
    _patch(index, index.stat().st_size - 4, b"XXXX")     # the closing magic
    (problem,) = _verify(home, quick=True).problems
    assert problem.label == "index" and "parquet footer unreadable" in problem.problem


def test_quick_verify_catches_a_wids_index_that_miscounts(build):
    home, out = build
    wids = out / "wds" / "demo-train.wids.json"
    text = wids.read_text()
    assert '"nsamples": 16' in text
    wids.write_text(text.replace('"nsamples": 16', '"nsamples": 17', 1))   # same size
    (problem,) = _verify(home, quick=True).problems
    assert problem.label == "wids[train]"
    assert "wids index lists 61 samples, the split has 60" in problem.problem


def test_full_verify_catches_a_flipped_byte_that_quick_cannot_see(build, capsys):
    home, out = build
    tar = out / "wds" / "demo-train-000002.tar"
    _flip(tar, 2000)                            # inside a sample's bytes
    assert _verify(home, quick=True).ok
    report = _verify(home, quick=False)
    assert report.hashed_on == "threads"
    assert [(p.label, p.problem.split(",")[0][:6]) for p in report.problems] == [
        ("wds[train]", "sha256")]
    assert main(["catalog", "verify", "demo", "--home", home]) == 1
    captured = capsys.readouterr()
    assert "1 problem(s)" in captured.err and "(corrupt)" in captured.out


@pytest.mark.usefixtures("ray_local")
def test_full_verify_hashes_on_ray_tasks_when_ray_is_up(build):
    home, out = build
    assert _verify(home, quick=False).hashed_on == "ray"
    _flip(out / "beton" / "demo-val.beton", 30000)
    report = _verify(home, quick=False)
    assert report.hashed_on == "ray"
    assert [p.label for p in report.problems] == ["beton[val]"]
    assert "sha256" in report.problems[0].problem
