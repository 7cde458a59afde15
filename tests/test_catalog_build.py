"""Building cards and registering ingests on a private local Ray; verify, lineage, reuse."""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest

from shardforge import catalog
from shardforge.build import pipeline as registry
from shardforge.build.config import IngestConfig
from shardforge.build.job import RejectsInStrictMode
from shardforge.build.pipeline import Param, Pipeline
from shardforge.build.secrets import fingerprint
from shardforge.catalog import pipelines
from shardforge.catalog.builder import build_dataset
from shardforge.catalog.errors import CardError, PipelineNotImplemented
from shardforge.catalog.ingest import ingest
from shardforge.catalog.store import Store
from shardforge.cli import main
from shardforge.formats.image import ImageParams
from shardforge.sources.base import SourceOptions
from shardforge.sources.demo import DemoSpec, generate_demo_data

pytestmark = pytest.mark.usefixtures("ray_local")

TINY = DemoSpec(num_classes=10, train_per_class=3, val_per_class=1, max_side=200)
TINY_SOURCE = "{num_classes: 10, train_per_class: 3, val_per_class: 1, max_side: 200}"

CARDS = {
    "tiny": f"""
        name: tiny
        description: The demo generator at toy size.
        source:
          demo: {TINY_SOURCE}
        pipeline:
          name: ingest
          params: {{max_res: 64, shard_size: 8}}
        licence: CC0-1.0
        citation: shardforge demo
        """,
    "tiny-32": """
        name: tiny-32
        description: tiny re-encoded at 32 px.
        source: {dataset: tiny}
        pipeline: {name: ingest, params: {max_res: 32}}
        formats: [wds, beton]
        licence: CC0-1.0
        """,
    "tiny-cuda": """
        name: tiny-cuda
        description: tiny made unlearnable.
        source: {dataset: tiny-32}
        pipeline:
          name: unlearnable
          params: {method: cuda}
          secrets: {private_key: {env: SF_TEST_TINY_KEY}}
        licence: CC0-1.0
        """,
    "folder": """
        name: folder
        description: A class-folder tree given at build time.
        source: {path: null}
        pipeline: {name: ingest, params: {max_res: 48, shard_size: 16}}
        licence: CC0-1.0
        """,
    "folder-env": """
        name: folder-env
        description: A class-folder tree named by an environment variable.
        source: {path: "${SF_TEST_FOLDER}"}
        pipeline: {name: ingest, params: {max_res: 48, shard_size: 16}}
        licence: CC0-1.0
        """,
    "folder-24": """
        name: folder-24
        description: folder at 24 px.
        source: {dataset: folder}
        pipeline: {name: ingest, params: {max_res: 24}}
        licence: CC0-1.0
        """,
}


def _write_cards(directory, cards: dict[str, str]) -> str:
    import textwrap

    os.makedirs(directory, exist_ok=True)
    for name, text in cards.items():
        with open(os.path.join(directory, f"{name}.yaml"), "w") as f:
            f.write(textwrap.dedent(text))
    return str(directory)


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tiny") / "src"
    generate_demo_data(root, TINY)
    return str(root)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """tiny-32 built from its card: tiny (demo generator) first, then tiny-32."""
    base = tmp_path_factory.mktemp("catalog")
    home, cards = str(base / "home"), _write_cards(base / "cards", CARDS)
    log = io.StringIO()
    build = build_dataset("tiny-32", home=home, cards_dir=cards, log=log)
    return {"home": home, "cards": cards, "build": build, "log": log.getvalue()}


def test_build_builds_parent_first_and_registers_lineage(built):
    home, build = built["home"], built["build"]
    assert build.ref == "tiny-32@v1" and build.parent == "tiny@v1"
    log = built["log"]
    assert log.index("tiny: building") < log.index("tiny-32: building")
    chain = catalog.lineage("tiny-32", home=home)
    assert [b.ref for b in chain] == ["tiny-32@v1", "tiny@v1"]
    root = chain[-1]
    assert root.parent is None and root.source.startswith(os.path.join(home, "sources", "demo"))
    for b in chain:
        assert b.samples == 40 and b.splits["train"]["samples"] == 30
        assert b.splits["val"]["per_class"] == {str(i): 1 for i in range(10)}
        assert b.classes == sorted(TINY.classes)       # names carried over from the parent
        assert b.card_hash and b.code_version.startswith("shardforge")
        assert b.rejects["count"] == 0 and b.bytes_per_sample > 0
        assert b.card["licence"] == "CC0-1.0"
        for _label, rec in b.files():
            assert os.path.getsize(rec["url"]) == rec["size"] and len(rec["sha256"]) == 64
    assert root.params["max_res"] == 64 and build.params["max_res"] == 32
    assert build.out.startswith(os.path.join(home, "datasets", "tiny-32"))
    assert catalog.resolve("tiny-32", "wds", "train", home=home) == [
        r["url"] for r in build.formats["wds"]["train"]]


def test_unchanged_cards_are_reused_not_rebuilt(built):
    log = io.StringIO()
    again = build_dataset("tiny-32", home=built["home"], cards_dir=built["cards"], log=log)
    assert again == built["build"]
    assert "tiny: reusing tiny@v1" in log.getvalue()
    assert "tiny-32: reusing tiny-32@v1" in log.getvalue()
    assert "building" not in log.getvalue()
    assert Store(built["home"]).versions("tiny-32") == [1]
    assert build_dataset("tiny-32", home=built["home"], cards_dir=built["cards"],
                         dry_run=True, log=io.StringIO()) == again


def test_changed_card_builds_a_new_version_on_the_same_parent(built, tmp_path):
    cards = _write_cards(tmp_path / "cards", {
        **CARDS, "tiny-32": CARDS["tiny-32"].replace("max_res: 32", "max_res: 24")})
    log = io.StringIO()
    assert build_dataset("tiny-32", home=built["home"], cards_dir=cards, dry_run=True,
                         log=log) is None
    assert "tiny-32: would build" in log.getvalue()
    build = build_dataset("tiny-32", home=built["home"], cards_dir=cards, log=io.StringIO())
    assert build.ref == "tiny-32@v2" and build.parent == "tiny@v1"
    assert build.card_hash != built["build"].card_hash and build.out != built["build"].out
    assert Store(built["home"]).versions("tiny") == [1]
    assert catalog.get("tiny-32", home=built["home"]).ref == "tiny-32@v2"   # latest


def test_path_sources_come_from_the_card_or_source_override(built, tiny_tree, monkeypatch):
    home, cards = built["home"], built["cards"]
    with pytest.raises(CardError) as info:
        build_dataset("folder", home=home, cards_dir=cards)
    assert info.value.field == "source.path" and "--source" in info.value.fix
    monkeypatch.delenv("SF_TEST_FOLDER", raising=False)
    with pytest.raises(CardError, match=r"source.path: \$\{SF_TEST_FOLDER\} is not set"):
        build_dataset("folder-env", home=home, cards_dir=cards)
    with pytest.raises(CardError, match=r"folder.yaml: source.path: is not given.*--source "
                                        r"folder=PATH"):
        build_dataset("folder-24", home=home, cards_dir=cards)   # parent source unknown
    folder = build_dataset("folder", home=home, cards_dir=cards,
                           sources={"folder": tiny_tree}, log=io.StringIO())
    assert folder.source == tiny_tree and folder.parent is None and folder.samples == 40
    log = io.StringIO()    # the parent's source is not given again: its latest build is used
    child = build_dataset("folder-24", home=home, cards_dir=cards, log=log)
    assert child.parent == folder.ref and "folder: using folder@v1" in log.getvalue()
    monkeypatch.setenv("SF_TEST_FOLDER", tiny_tree)
    env = build_dataset("folder-env", home=home, cards_dir=cards, log=io.StringIO())
    assert env.source == tiny_tree and env.ref == "folder-env@v1"


def test_planned_pipeline_refuses_to_build(built, monkeypatch):
    pipelines.load_pipelines()      # unlearnable is implemented: plan it again for this test
    monkeypatch.setitem(registry._REGISTRY, "unlearnable", Pipeline(
        name="unlearnable", summary="test", params={"method": Param((str,))},
        secrets=("private_key",), planned="a later issue"))
    monkeypatch.setenv("SF_TEST_TINY_KEY", "0123456789abcdef-secret")
    with pytest.raises(PipelineNotImplemented, match="pipeline 'unlearnable'"):
        build_dataset("tiny-cuda", home=built["home"], cards_dir=built["cards"])
    assert "tiny-cuda" not in Store(built["home"]).names()


def test_secret_parameters_are_never_stored_and_failed_builds_never_registered(
        built, tmp_path, monkeypatch, capsys):
    key = "tiny-private-key-0123456789"
    calls = []

    def leaky_build(request):
        calls.append(request.secrets["private_key"])
        if len(calls) == 1:
            raise RuntimeError("worker died")        # an interrupted build
        parent = catalog.get(request.parent.ref, home=built["home"])
        summary = json.loads(json.dumps(parent.to_dict()))   # the parent's files, relabelled
        summary["source"] = f"/keys/{request.secrets['private_key']}/wds"   # a careless leak
        return summary

    pipelines.load_pipelines()
    monkeypatch.setitem(registry._REGISTRY, "unlearnable", Pipeline(
        name="unlearnable", summary="test", params={"method": Param((str,))},
        secrets=("private_key",), build=leaky_build))
    monkeypatch.setenv("SF_TEST_TINY_KEY", key)
    home = built["home"]
    with pytest.raises(RuntimeError, match="worker died"):
        build_dataset("tiny-cuda", home=home, cards_dir=built["cards"], log=io.StringIO())
    assert "tiny-cuda" not in Store(home).names()
    build = build_dataset("tiny-cuda", home=home, cards_dir=built["cards"], log=io.StringIO())
    assert calls == [key, key]
    assert build.ref == "tiny-cuda@v1" and build.secrets == {"private_key": fingerprint(key)}
    assert build.source.startswith("<secret private_key pbkdf2-sha256:")
    assert build.params == {"method": "cuda"}
    for name in os.listdir(home):
        path = os.path.join(home, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                assert key.encode() not in f.read(), name
    assert main(["catalog", "show", "tiny-cuda", "--home", home]) == 0
    out = capsys.readouterr().out
    assert key not in out and fingerprint(key) in out
    monkeypatch.setenv("SF_TEST_TINY_KEY", key + "-rotated")   # another key: another build
    rotated = build_dataset("tiny-cuda", home=home, cards_dir=built["cards"], log=io.StringIO())
    assert rotated.ref == "tiny-cuda@v2" and rotated.card_hash != build.card_hash


def _config(src: str, out: str, **kw) -> IngestConfig:
    return IngestConfig(source=src, name="tinyingest", out=out,
                        image=ImageParams(max_resolution=48),
                        source_options=SourceOptions(shard_size=16), **kw)


@pytest.fixture(scope="module")
def ingested(tiny_tree, tmp_path_factory):
    base = tmp_path_factory.mktemp("ingested")
    home, out = str(base / "home"), str(base / "out")
    summary = ingest(_config(tiny_tree, out), home=home, log=io.StringIO())
    return {"home": home, "out": out, "summary": summary}


def test_every_ingest_registers_once(ingested, tiny_tree, tmp_path):
    home, out = ingested["home"], ingested["out"]
    assert ingested["summary"]["catalog"] == "tinyingest@v1"
    build = catalog.get("tinyingest", home=home)
    assert build.pipeline == "ingest" and build.card_hash is None and build.source == tiny_tree
    assert build.job_hash == ingested["summary"]["job_hash"] and build.out == out
    again = ingest(_config(tiny_tree, out), home=home, log=io.StringIO())   # nothing to do
    assert again["catalog"] == "tinyingest@v1"
    other = ingest(_config(tiny_tree, str(tmp_path / "out2")), home=home, log=io.StringIO())
    assert other["catalog"] == "tinyingest@v2"       # same inputs, another place: a new build
    skipped = ingest(_config(tiny_tree, str(tmp_path / "out3")), home=home, register=False,
                     log=io.StringIO())
    assert "catalog" not in skipped and Store(home).versions("tinyingest") == [1, 2]


def test_strict_rejects_register_nothing(tiny_tree, tmp_path):
    src = str(tmp_path / "src")
    shutil.copytree(tiny_tree, src)
    with open(os.path.join(src, "train", "circle", "broken.JPEG"), "wb") as f:
        f.write(b"not a jpeg")
    home = str(tmp_path / "home")
    with pytest.raises(RejectsInStrictMode):
        ingest(_config(src, str(tmp_path / "out"), strict=True), home=home, log=io.StringIO())
    assert Store(home).names() == []
    cards = _write_cards(tmp_path / "cards", {"folder": CARDS["folder"].replace(
        "shard_size: 16", "shard_size: 16, strict: true")})
    assert main(["build", "folder", "--source", src, "--cards", cards, "--home", home]) == 1
    assert Store(home).names() == []


def test_verify_catches_truncated_tar_and_flipped_byte(ingested, capsys):
    home, build = ingested["home"], catalog.get("tinyingest@v1", home=ingested["home"])
    assert catalog.verify("tinyingest@v1", home=home).ok
    assert main(["catalog", "verify", "tinyingest@v1", "--home", home]) == 0
    assert "ok" in capsys.readouterr().out
    tar = build.formats["wds"]["train"][1]["url"]
    beton = build.formats["beton"]["val"]["url"]
    backup = {p: open(p, "rb").read() for p in (tar, beton)}
    try:
        with open(tar, "r+b") as f:                       # truncated shard
            f.truncate(os.path.getsize(tar) - 512)
        report = catalog.verify("tinyingest@v1", home=home)
        assert [(p.label, p.url) for p in report.problems] == [("wds[train]", tar)]
        assert "size" in report.problems[0].problem
        assert main(["catalog", "verify", "tinyingest@v1", "--home", home]) == 1
        captured = capsys.readouterr()
        assert tar in captured.out and "1 problem" in captured.err
        with open(tar, "wb") as f:
            f.write(backup[tar])
        with open(beton, "r+b") as f:                     # one flipped byte, same size
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0x01]))
        assert main(["catalog", "verify", "tinyingest@v1", "--home", home, "--json"]) == 1
        result = json.loads(capsys.readouterr().out)
        assert not result["ok"] and [p["url"] for p in result["problems"]] == [beton]
        assert "sha256" in result["problems"][0]["problem"]
        os.remove(beton)                                  # missing file
        report = catalog.verify("tinyingest@v1", home=home)
        assert [(p.url, p.problem) for p in report.problems] == [(beton, "missing")]
    finally:
        for path, data in backup.items():
            with open(path, "wb") as f:
                f.write(data)
    assert catalog.verify("tinyingest@v1", home=home).ok


def test_cli_build_and_catalog_commands(built, capsys):
    home, cards = built["home"], built["cards"]
    assert main(["build", "tiny-32", "--home", home, "--cards", cards, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["parent"] == "tiny@v1"
    assert "reusing" in captured.err
    assert main(["catalog", "lineage", "tiny-32@v1", "--home", home]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tiny-32@v1  ingest") and lines[1].startswith("└─ tiny@v1")
    assert lines[2].strip().startswith("└─ source: ") and "sources/demo" in lines[2]
    assert main(["catalog", "resolve", "tiny@v1", "--format", "wds", "--split", "val",
                 "--home", home, "--json"]) == 0
    urls = json.loads(capsys.readouterr().out)["urls"]
    assert len(urls) == 2 and all(os.path.exists(u) for u in urls)
    assert main(["catalog", "cards", "--cards", cards, "--home", home, "--json"]) == 0
    latest = {c["name"]: c["latest"] for c in json.loads(capsys.readouterr().out)}
    assert latest["tiny"] == "tiny@v1" and latest["tiny-32"].startswith("tiny-32@v")
