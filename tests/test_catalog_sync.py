"""A catalog on shared storage: every registration writes ``OUT/catalog-entry.json``,
``shardforge catalog sync URL`` registers those builds in another home (idempotent,
concurrent-safe, versions kept, conflicts reported), and the read commands work on a
read-only home without writing to it (``--read-only`` / ``SHARDFORGE_HOME_READ_ONLY``, or
a home with no write bit)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import shardforge
from shardforge.catalog.errors import RegistrationError
from shardforge.catalog.home import READ_ONLY_ENV
from shardforge.catalog.register import register_build
from shardforge.catalog.store import Store
from shardforge.catalog.sync import sync_catalog
from shardforge.cli import main

SRC = str(Path(shardforge.__file__).resolve().parents[1])
ENTRY = "catalog-entry.json"


def make_output(root: Path, tag: str, name: str = "alpha") -> Path:
    """A finished output directory with one real tar and its summary.json."""
    out = root / tag
    (out / "wds").mkdir(parents=True)
    data = hashlib.sha256(tag.encode()).digest() * 40
    tar = out / "wds" / f"{name}-train-000000.tar"
    tar.write_bytes(data)
    rec = {"url": str(tar), "path": f"wds/{tar.name}", "size": len(data),
           "sha256": hashlib.sha256(data).hexdigest(), "samples": 2}
    summary = {"name": name, "out": str(out), "source": f"/src/{tag}",
               "splits": {"train": {"samples": 2, "shards": 1, "per_class": {"0": 2}}},
               "samples": 2, "formats": {"wds": {"train": [rec]}}, "index": None,
               "rejects": {"count": 0}, "bytes_per_sample": 640, "classes": ["c0"]}
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``shardforge ARGV`` in this process: exit code, stdout, stderr."""
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def listing(capsys, home: Path) -> list[dict]:
    rc, out, err = cli(capsys, "catalog", "list", "--all", "--json", "--home", str(home))
    assert rc == 0, err
    return json.loads(out)


def shows(capsys, home: Path, refs: list[str]) -> list[dict]:
    found = []
    for ref in refs:
        rc, out, err = cli(capsys, "catalog", "show", ref, "--json", "--home", str(home))
        assert rc == 0, err
        found.append(json.loads(out))
    return found


def shared_catalog(tmp_path: Path) -> tuple[Path, Path]:
    """Home A with alpha@v1, alpha@v2 and beta@v1 (parent alpha@v2), all written under
    ``tmp_path/shared`` at different depths."""
    shared, home = tmp_path / "shared", tmp_path / "home-a"
    register_build(home, "alpha", summary_of(make_output(shared, "a1")))
    register_build(home, "alpha", summary_of(make_output(shared / "team" / "x", "a2")))
    register_build(home, "beta", summary_of(make_output(shared / "team", "b1", "beta")),
                   parent="alpha@v2", pipeline="stylize")
    return shared, home


# -- entries ---------------------------------------------------------------------------

def test_registration_writes_the_entry_next_to_the_outputs(tmp_path, capsys):
    out = make_output(tmp_path, "a1")
    build = register_build(tmp_path / "home", "alpha", summary_of(out))
    entry = json.loads((out / ENTRY).read_text())
    assert entry["entry_format"] == 1
    assert {k: v for k, v in entry.items() if k != "entry_format"} == build.to_dict()
    # Another home registers the same build as its v2: the first (shared) entry stays.
    other = tmp_path / "home-2"
    register_build(other, "alpha", summary_of(make_output(tmp_path, "zz")))
    before = (out / ENTRY).read_bytes()
    assert register_build(other, "alpha", summary_of(out)).ref == "alpha@v2"
    assert (out / ENTRY).read_bytes() == before
    assert capsys.readouterr().err == ""


def test_an_entry_that_cannot_be_written_warns_and_the_build_stays_registered(tmp_path,
                                                                              caplog):
    out = make_output(tmp_path, "a1")
    (out / ENTRY).mkdir()                     # the entry's name is taken by a directory
    with caplog.at_level("WARNING", logger="shardforge.catalog.register"):
        build = register_build(tmp_path / "home", "alpha", summary_of(out))
    err = caplog.text
    assert build.ref == "alpha@v1" and Store(tmp_path / "home").names() == ["alpha"]
    assert "warning: alpha@v1 is registered" in err and f"catalog register {out}" in err


# -- sync ------------------------------------------------------------------------------

@pytest.mark.usefixtures("ray_local")
def test_two_homes_see_the_same_builds_after_a_sync(tmp_path, capsys):
    """A real ingest into a shared directory, registered in home A as every build is;
    `catalog sync` into home B; both homes list and show the same builds."""
    from shardforge.build.config import IngestConfig
    from shardforge.catalog.ingest import ingest
    from shardforge.formats.image import ImageParams
    from shardforge.sources.base import SourceOptions
    from shardforge.sources.demo import DemoSpec, generate_demo_data

    src, shared = tmp_path / "src", tmp_path / "shared"
    generate_demo_data(src, DemoSpec(num_classes=2, train_per_class=3, val_per_class=1,
                                     min_side=48, max_side=64))
    home_a, home_b = tmp_path / "home-a", tmp_path / "home-b"
    summary = ingest(IngestConfig(source=str(src), name="tiny", out=str(shared / "tiny"),
                                  image=ImageParams(max_resolution=32),
                                  source_options=SourceOptions(shard_size=4)),
                     home=home_a, log=io.StringIO())
    assert summary["catalog"] == "tiny@v1" and (shared / "tiny" / ENTRY).is_file()

    rc, out, err = cli(capsys, "catalog", "sync", str(shared), "--home", str(home_b))
    assert rc == 0, err
    assert out.splitlines()[0].split() == ["added", "tiny@v1", str(shared / "tiny" / ENTRY)]
    assert "1 added, 0 present, 0 conflict, 0 problem" in out
    assert listing(capsys, home_a) == listing(capsys, home_b)
    assert shows(capsys, home_a, ["tiny@v1"]) == shows(capsys, home_b, ["tiny@v1"])
    for home in (home_a, home_b):
        rc, out, _ = cli(capsys, "catalog", "verify", "tiny", "--home", str(home))
        assert rc == 0

    before = Store(home_b).all()
    rc, out, err = cli(capsys, "catalog", "sync", str(shared), "--home", str(home_b), "--json")
    assert rc == 0, err
    assert [i["status"] for i in json.loads(out)["items"]] == ["present"]
    assert Store(home_b).all() == before       # the second sync changed nothing


def test_sync_keeps_versions_and_lineage(tmp_path, capsys):
    shared, home_a = shared_catalog(tmp_path)
    home_b = tmp_path / "home-b"
    report = sync_catalog(str(shared), home_b)
    assert report.ok and report.count("added") == 3
    assert listing(capsys, home_a) == listing(capsys, home_b)
    refs = ["alpha@v1", "alpha@v2", "beta@v1"]
    assert shows(capsys, home_a, refs) == shows(capsys, home_b, refs)
    rc, out, _ = cli(capsys, "catalog", "lineage", "beta", "--home", str(home_b))
    assert rc == 0 and "alpha@v2" in out
    # A depth limit that stops above team/x/a2 leaves alpha@v2 out.
    shallow = sync_catalog(str(shared), tmp_path / "home-c", max_depth=2)
    assert sorted(i.ref for i in shallow.items) == ["alpha@v1", "beta@v1"]


def test_sync_reports_a_conflicting_version_and_overwrites_nothing(tmp_path, capsys):
    shared, _home_a = shared_catalog(tmp_path)
    home_b = tmp_path / "home-b"
    own = register_build(home_b, "alpha", summary_of(make_output(tmp_path / "own", "o1")))
    rc, out, err = cli(capsys, "catalog", "sync", str(shared), "--home", str(home_b))
    assert rc == 1
    conflict = [ln for ln in err.splitlines() if ln.startswith("conflict")]
    assert len(conflict) == 1 and "alpha@v1" in conflict[0]
    assert "nothing overwritten" in conflict[0] and "catalog register" in conflict[0]
    assert "1 conflict" in err
    assert Store(home_b).get("alpha", 1) == own           # untouched
    assert Store(home_b).versions("alpha") == [1, 2]      # v2 added as the entry says
    assert Store(home_b).get("beta").parent == "alpha@v2"


def test_sync_reports_stale_moved_and_damaged_entries(tmp_path, capsys):
    shared, _home_a = shared_catalog(tmp_path)
    rebuilt = summary_of(shared / "a1")                  # files rebuilt after registration
    rebuilt["formats"]["wds"]["train"][0]["sha256"] = "f" * 64
    (shared / "a1" / "summary.json").write_text(json.dumps(rebuilt))
    shutil.copytree(shared / "team" / "b1", shared / "copy-of-b1")
    (shared / "team" / "x" / "a2" / ENTRY).write_text("{not json")
    rc, _out, err = cli(capsys, "catalog", "sync", str(shared), "--home",
                        str(tmp_path / "home-b"))
    assert rc == 1
    problems = {ln.split()[2].split("/")[-2]: ln for ln in err.splitlines()
                if ln.startswith("problem")}
    assert set(problems) == {"a1", "copy-of-b1", "a2"}
    assert "rebuilt after its entry was written" in problems["a1"]
    assert "copied or moved" in problems["copy-of-b1"]
    assert "is not JSON" in problems["a2"]
    assert Store(tmp_path / "home-b").names() == ["beta"]


def test_two_syncs_at_once_add_each_build_once(tmp_path):
    shared = tmp_path / "shared"
    home_a = tmp_path / "home-a"
    for i in range(12):
        register_build(home_a, f"ds{i % 3}", summary_of(make_output(shared, f"t{i}")))
    home_b = tmp_path / "home-b"
    env = {**os.environ, "PYTHONPATH": SRC}
    command = [sys.executable, "-m", "shardforge.cli", "catalog", "sync", str(shared),
               "--home", str(home_b), "--json"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    statuses = [i["status"] for out, _err in results for i in json.loads(out)["items"]]
    assert statuses.count("added") == 12 and statuses.count("present") == 12
    assert [b.ref for b in Store(home_b).all()] == [b.ref for b in Store(home_a).all()]
    assert Store(home_b).integrity_check() == "ok"


def test_sync_errors_are_one_line(tmp_path, capsys):
    rc, _out, err = cli(capsys, "catalog", "sync", str(tmp_path / "nowhere"),
                        "--home", str(tmp_path / "h"))
    assert rc == 2 and len(err.splitlines()) == 1 and "does not exist" in err


# -- read-only homes -------------------------------------------------------------------

READS = (["list", "--all"], ["show", "beta"], ["resolve", "alpha@v1", "--format", "wds"],
         ["lineage", "beta"])


def _tree(home: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in home.iterdir()}


@pytest.mark.parametrize("switch", ["flag", "env", "no-write-bit"])
def test_read_commands_on_a_read_only_home_write_nothing(tmp_path, switch):
    """chmod -R a-w, then the read commands in a subprocess: they succeed and leave the
    home as it was (as root, SQLite would otherwise create catalog.db-shm and -wal)."""
    _shared, home = shared_catalog(tmp_path)
    before = _tree(home)
    for path in (home, *home.iterdir()):
        path.chmod(path.stat().st_mode & ~0o222)
    env = {**os.environ, "PYTHONPATH": SRC}
    env.pop(READ_ONLY_ENV, None)
    extra = ["--read-only"] if switch == "flag" else []
    if switch == "env":
        env[READ_ONLY_ENV] = "1"
    try:
        for args in READS:
            proc = subprocess.run([sys.executable, "-m", "shardforge.cli", "catalog", *args,
                                   "--home", str(home), *extra], capture_output=True,
                                  text=True, env=env, timeout=60)
            assert proc.returncode == 0 and proc.stderr == "", (args, proc.stderr)
            assert proc.stdout.strip()
        assert _tree(home) == before               # no -shm, no -wal, same bytes
    finally:
        home.chmod(0o755)


def test_read_only_switch_opens_every_connection_read_only(tmp_path, capsys, monkeypatch):
    """Through the code path: every sqlite3.connect of the read commands is a ``mode=ro``
    URI (``immutable=1``: no -shm to create) and no write transaction starts."""
    _shared, home = shared_catalog(tmp_path)
    before = _tree(home)
    opened: list[tuple] = []
    real = sqlite3.connect

    def spy(database, *args, **kwargs):
        opened.append((str(database), kwargs.get("uri", False)))
        return real(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    monkeypatch.setenv(READ_ONLY_ENV, "1")
    monkeypatch.setattr(Store, "_write", lambda self: pytest.fail("a write was attempted"))
    for args in READS:
        rc, out, err = cli(capsys, "catalog", *args, "--home", str(home))
        assert rc == 0 and out and not err, err
    assert opened and all(uri and "mode=ro" in db and "immutable=1" in db
                          for db, uri in opened), opened
    assert _tree(home) == before


def test_writes_to_a_read_only_home_are_refused_in_one_line(tmp_path, capsys):
    shared, _home_a = shared_catalog(tmp_path)
    home = tmp_path / "mounted"
    for args in (["register", str(shared / "a1")], ["sync", str(shared)]):
        rc, out, err = cli(capsys, "catalog", *args, "--home", str(home), "--read-only")
        assert rc == 1 and out == "" and len(err.splitlines()) == 1, err
        assert READ_ONLY_ENV in err and "--home DIR" in err
    assert not home.exists()
    with pytest.raises(RegistrationError, match="read-only"):
        Store(home, read_only=True).add_entries([])
