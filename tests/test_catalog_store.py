"""The catalog store and lookups, without Ray: versions, immutability, concurrency, secrets."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3

import pytest

from shardforge import catalog
from shardforge.build.secrets import Secrets, fingerprint
from shardforge.catalog.entry import Ref, parse_ref
from shardforge.catalog.errors import CatalogError, RegistrationError, UnknownDataset
from shardforge.catalog.home import HOME_ENV, default_home, resolve_home
from shardforge.catalog.store import Store

# Light imports only: the parallel-writer test's spawned processes import this module.


def main(argv: list[str]) -> int:
    from shardforge.cli import main as cli_main

    return cli_main(argv)


def fake_summary(tag: str, splits: tuple[str, ...] = ("train", "val"), shards: int = 2) -> dict:
    """A summary in the ingest layout whose file records are unique to ``tag``."""
    wds, beton, stats = {}, {}, {}
    for split in splits:
        wds[split] = [{"url": f"/data/{tag}/wds/x-{split}-{i:06d}.tar",
                       "path": f"wds/x-{split}-{i:06d}.tar", "size": 100 + i,
                       "sha256": hashlib.sha256(f"{tag}{split}{i}".encode()).hexdigest(),
                       "samples": 5} for i in range(shards)]
        beton[split] = {"url": f"/data/{tag}/beton/x-{split}.beton",
                        "path": f"beton/x-{split}.beton", "size": 1000,
                        "sha256": hashlib.sha256(f"{tag}{split}b".encode()).hexdigest()}
        stats[split] = {"samples": 5 * shards, "shards": shards, "rejects": 0,
                        "per_class": {"0": 3 * shards, "1": 2 * shards}}
    return {"name": "x", "source": f"/src/{tag}", "out": f"/data/{tag}",
            "created": "2024-01-01T00:00:00+00:00", "job_hash": f"job-{tag}",
            "params": {"image": {"max_resolution": 64}}, "classes": ["cat", "dog"],
            "splits": stats, "samples": 5 * shards * len(splits),
            "formats": {"wds": wds, "beton": beton},
            "index": {"url": f"/data/{tag}/index.parquet", "path": "index.parquet",
                      "size": 10, "sha256": "0" * 64},
            "rejects": {"url": f"/data/{tag}/rejects.jsonl", "count": 1},
            "bytes_per_sample": 20.5}


def test_versions_are_per_name_and_identical_registrations_dedupe(tmp_path):
    home = tmp_path / "home"
    a1 = catalog.register_build(home, "alpha", fake_summary("a1"))
    a2 = catalog.register_build(home, "alpha", fake_summary("a2"))
    b1 = catalog.register_build(home, "beta", fake_summary("b1"))
    again = catalog.register_build(home, "alpha", fake_summary("a1"))
    assert (a1.ref, a2.ref, b1.ref, again.ref) == ("alpha@v1", "alpha@v2", "beta@v1", "alpha@v1")
    assert again.registered == a1.registered        # the existing entry, not a new one
    assert catalog.get("alpha", home=home).ref == "alpha@v2"   # latest by default
    assert catalog.get("alpha@v1", home=home).source == "/src/a1"
    assert catalog.get("alpha@1", home=home).ref == "alpha@v1"
    assert [b.ref for b in catalog.list(home=home)] == ["alpha@v2", "beta@v1"]
    assert [b.ref for b in catalog.list(home=home, all_versions=True)] == [
        "alpha@v1", "alpha@v2", "beta@v1"]


def test_each_streams_what_all_lists(tmp_path):
    """Store.each (what `catalog list` iterates, one entry in memory at a time) yields
    exactly Store.all's builds, in its order; an empty catalog yields nothing."""
    from shardforge.catalog.lookup import each_build

    home = tmp_path / "home"
    assert list(Store(home).each()) == [] and list(each_build(home)) == []
    for tag, name in (("a1", "alpha"), ("b1", "beta"), ("a2", "alpha"), ("c1", "gamma")):
        catalog.register_build(home, name, fake_summary(tag))
    store = Store(home)
    for latest in (False, True):
        assert list(store.each(latest)) == store.all(latest)
        assert list(each_build(home, all_versions=not latest)) == store.all(latest)
    assert [b.ref for b in store.each(latest_only=True)] == ["alpha@v2", "beta@v1", "gamma@v1"]


def test_entry_records_provenance_splits_and_files(tmp_path):
    build = catalog.register_build(tmp_path, "alpha", fake_summary("a"), card_hash="c" * 64,
                                   pipeline="ingest", card={"licence": "CC0"})
    entry = catalog.get("alpha", home=tmp_path).to_dict()
    assert entry == build.to_dict()
    assert entry["code_version"].startswith("shardforge ")
    assert entry["card_hash"] == "c" * 64 and entry["parent"] is None
    assert entry["splits"]["train"]["per_class"] == {"0": 6, "1": 4}
    assert entry["rejects"]["count"] == 1 and entry["bytes_per_sample"] == 20.5
    assert entry["formats"]["wds"]["val"][1]["sha256"]
    assert entry["params"] == {"image": {"max_resolution": 64}}
    assert [label for label, _ in build.files()] == [
        "wds[train]", "wds[train]", "wds[val]", "wds[val]", "beton[train]", "beton[val]",
        "index"]


def test_entries_are_immutable(tmp_path):
    catalog.register_build(tmp_path, "alpha", fake_summary("a"))
    with sqlite3.connect(tmp_path / "catalog.db") as conn:
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            conn.execute("UPDATE builds SET samples = 0")
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            conn.execute("DELETE FROM builds")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_incomplete_summary_is_refused(tmp_path):
    summary = fake_summary("a")
    del summary["formats"]
    with pytest.raises(RegistrationError, match="formats.*complete build"):
        catalog.register_build(tmp_path, "alpha", summary)
    with pytest.raises(RegistrationError, match="no version"):
        catalog.register_build(tmp_path, "alpha", fake_summary("a"), parent="beta")
    assert catalog.list(home=tmp_path) == []


def test_lineage_and_resolve(tmp_path):
    root = catalog.register_build(tmp_path, "base", fake_summary("r"))
    mid = catalog.register_build(tmp_path, "mid", fake_summary("m"), parent=root.ref,
                                 pipeline="stylize")
    leaf = catalog.register_build(tmp_path, "leaf", fake_summary("l"), parent="mid@v1",
                                  pipeline="distill")
    assert [b.ref for b in catalog.lineage("leaf", home=tmp_path)] == [
        leaf.ref, mid.ref, root.ref]
    assert catalog.resolve("leaf", "wds", "val", home=tmp_path) == [
        "/data/l/wds/x-val-000000.tar", "/data/l/wds/x-val-000001.tar"]
    assert catalog.resolve("leaf@v1", "beton", "train", home=tmp_path) == [
        "/data/l/beton/x-train.beton"]
    with pytest.raises(UnknownDataset, match="no split 'vall'.*did you mean: val"):
        catalog.resolve("leaf", "wds", "vall", home=tmp_path)
    with pytest.raises(CatalogError, match="not one of wds, beton"):
        catalog.resolve("leaf", "tfrecord", "val", home=tmp_path)


def test_unknown_names_suggest_close_matches(tmp_path):
    with pytest.raises(UnknownDataset, match="is empty"):
        catalog.get("demo", home=tmp_path)
    catalog.register_build(tmp_path, "imagenet", fake_summary("i"))
    with pytest.raises(UnknownDataset, match="unknown dataset 'imagnet'.*did you mean: imagenet"):
        catalog.get("imagnet", home=tmp_path)
    with pytest.raises(UnknownDataset, match="no version v7; its versions: v1"):
        catalog.get("imagenet@v7", home=tmp_path)


@pytest.mark.parametrize("text, ref", [("demo", Ref("demo")), ("demo@latest", Ref("demo")),
                                       ("demo@v3", Ref("demo", 3)), ("demo@3", Ref("demo", 3))])
def test_parse_ref(text, ref):
    assert parse_ref(text) == ref
    assert str(parse_ref(str(ref))) == str(ref)


@pytest.mark.parametrize("text", ["demo@v0", "demo@x", "de mo", "@v1", "demo@v1.2"])
def test_parse_ref_rejects(text):
    with pytest.raises(CatalogError, match="dataset reference"):
        parse_ref(text)


def test_home_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv(HOME_ENV, raising=False)
    assert str(default_home()).endswith(".shardforge")
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "h"))
    assert default_home() == tmp_path / "h"
    assert resolve_home(None) == tmp_path / "h"
    assert resolve_home(tmp_path / "other") == tmp_path / "other"
    with pytest.raises(CatalogError, match="local directory"):
        resolve_home("s3://bucket/home")


def test_secrets_are_fingerprinted_and_scrubbed(tmp_path):
    key = "k3y-0123456789abcdef"
    summary = fake_summary("s")
    summary["params"] = {"private_key": key, "cmd": f"cuda --key {key}", "n": 3}
    build = catalog.register_build(tmp_path, "secret", summary, pipeline="unlearnable",
                                   secret_params={"private_key": key})
    assert build.secrets == {"private_key": fingerprint(key)}
    assert fingerprint(key).startswith("pbkdf2-sha256:") and key not in fingerprint(key)
    assert build.params["private_key"] == f"<secret private_key {fingerprint(key)}>"
    assert key not in json.dumps(build.to_dict())
    for path in tmp_path.iterdir():            # the database, WAL included
        assert key.encode() not in path.read_bytes()
    assert key not in repr(Secrets({"private_key": key}))


def _register_many(home: str, worker: int, count: int, barrier, results) -> None:
    barrier.wait(timeout=60)            # every process starts registering at once
    refs = []
    for i in range(count):
        refs.append(catalog.register_build(home, "par", fake_summary(f"w{worker}-{i}")).ref)
        catalog.register_build(home, "shared", fake_summary("same-for-everyone"))
    results.put(refs)


def test_parallel_writers_lose_nothing(tmp_path):
    workers, each = 8, 10
    home = str(tmp_path / "home")
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_register_many, args=(home, w, each, barrier, results))
             for w in range(workers)]
    for p in procs:
        p.start()
    refs = [r for _ in procs for r in results.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(refs) == len(set(refs)) == workers * each
    store = Store(home)
    assert store.versions("par") == list(range(1, workers * each + 1))   # unique, contiguous
    assert store.versions("shared") == [1]                              # deduplicated
    builds = store.all()
    assert len({b.build_id for b in builds}) == len(builds) == workers * each + 1
    assert {b.source for b in builds if b.name == "par"} == {
        f"/src/w{w}-{i}" for w in range(workers) for i in range(each)}
    assert store.integrity_check() == "ok"


def test_cli_lookups(tmp_path, capsys):
    home = str(tmp_path)
    catalog.register_build(home, "base", fake_summary("r"))
    catalog.register_build(home, "mid", fake_summary("m"), parent="base@v1", pipeline="stylize")
    assert main(["catalog", "list", "--home", home]) == 0
    out = capsys.readouterr().out
    assert "base@v1" in out and "parent base@v1" in out
    assert main(["catalog", "list", "--home", home, "--json"]) == 0
    assert [b["ref"] for b in json.loads(capsys.readouterr().out)] == ["base@v1", "mid@v1"]
    assert main(["catalog", "show", "mid", "--home", home, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["parent"] == "base@v1"
    assert main(["catalog", "show", "mid@v1", "--home", home]) == 0
    out = capsys.readouterr().out
    assert "x-train-{000000..000001}.tar" in out and "cat=6, dog=4" in out
    assert main(["catalog", "resolve", "mid", "--format", "beton", "--split", "val",
                 "--home", home]) == 0
    assert capsys.readouterr().out.split() == ["/data/m/beton/x-val.beton"]
    assert main(["catalog", "lineage", "mid", "--home", home]) == 0
    tree = capsys.readouterr().out.splitlines()
    assert tree[0].startswith("mid@v1  stylize") and tree[1].startswith("└─ base@v1  ingest")
    assert tree[2].strip() == "└─ source: /src/r"
    assert main(["catalog", "lineage", "mid", "--home", home, "--json"]) == 0
    assert [b["ref"] for b in json.loads(capsys.readouterr().out)] == ["mid@v1", "base@v1"]


@pytest.mark.parametrize("args, needle", [
    (["catalog", "show", "bse"], "did you mean: base"),
    (["catalog", "show", "base@v9"], "no version v9"),
    (["catalog", "resolve", "base", "--format", "wds", "--split", "tset"], "no split 'tset'"),
    (["catalog", "lineage", "nothing"], "unknown dataset 'nothing'"),
    (["catalog", "verify", "bad name"], "not a dataset name"),
])
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, args, needle):
    catalog.register_build(tmp_path, "base", fake_summary("r"))
    assert main([*args, "--home", str(tmp_path)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and needle in err[0], err


def _quick_checks(monkeypatch) -> list[str]:
    """The ``PRAGMA quick_check`` statements every later connection runs."""
    calls: list[str] = []
    real = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real(*args, **kwargs)
        conn.set_trace_callback(lambda s: calls.append(s) if "quick_check" in s else None)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return calls


def test_quick_check_runs_when_something_else_touched_the_catalog(tmp_path, monkeypatch):
    """Writes skip the full-file check while only shardforge's writes touched the file
    (the one write cost that grew with the catalog, docs/scale.md); any other change to
    the file, even one that puts its mtime back, brings the check back."""
    import os

    home = tmp_path / "home"
    checks = _quick_checks(monkeypatch)
    catalog.register_build(home, "alpha", fake_summary("a0"))
    assert len(checks) == 1
    for i in range(1, 4):
        catalog.register_build(home, "alpha", fake_summary(f"a{i}"))
    reader = sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True)  # a live reader
    reader.execute("SELECT count(*) FROM builds").fetchone()
    catalog.register_build(home, "alpha", fake_summary("a4"))
    catalog.register_build(home, "alpha", fake_summary("a5"))
    reader.close()
    assert len(checks) == 1
    db = home / "catalog.db"
    st = db.stat()
    with open(db, "r+b") as f:          # the same bytes written back, mtime restored
        f.write(f.read(100))
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns))
    catalog.register_build(home, "alpha", fake_summary("a6"))
    assert len(checks) == 2
    (home / "catalog.db.checked").unlink()
    catalog.register_build(home, "alpha", fake_summary("a7"))
    assert len(checks) == 3
    assert [b.ref for b in catalog.list(home=home, all_versions=True)][-1] == "alpha@v8"
