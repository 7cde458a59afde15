"""Resume and durability (issue 13, item 7 and "kill points x damage").

- Every local write-then-rename fsyncs the file before the rename and the directory after
  (os.fsync / os.replace recorded in call order, per writer).
- A damaged manifest or summary.json (any parseable-but-wrong JSON) means "not complete".
- 4 artifacts x 4 damages on an interrupted build, and damage after a finished build:
  the rerun rebuilds exactly the damaged shard(s) and ends byte-identical to an
  uninterrupted run. These drive the build in-process (no Ray): fast.
- Slow: SIGKILL of the driver at 5 points (engine/faults.py), of a Ray worker mid-shard
  and of a variant actor; every rerun byte-identical to an uninterrupted run.

"Byte-identical" compares every file under the output root; JSON files are compared
with the output path replaced by a placeholder (the reference run lives elsewhere),
summary.json without its timing fields and manifests without the Ray node id.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import shardforge.build.job as ingest_job
from shardforge.build.config import IngestConfig
from shardforge.build.shard import build_shard, shard_paths
from shardforge.engine.manifest import verified_result, write_manifest
from shardforge.formats.beton import DEFAULT_PAGE_SIZE, BetonSample
from shardforge.formats.image import ImageParams
from shardforge.sources.base import SourceOptions
from shardforge.sources.demo import DemoSpec, generate_demo_data
from shardforge.storage import resolve

TINY = DemoSpec(num_classes=3, train_per_class=4, val_per_class=2, min_side=48, max_side=80)
VOLATILE = ("seconds", "stage_seconds", "images_per_second", "created", "shards_reused", "nodes",
            "catalog")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- helpers

def output_digest(out: str) -> dict[str, str]:
    """sha256 of every file under ``out`` by relative path; JSON files normalised (the
    output path -> "OUT", summary timing fields and manifest node ids dropped)."""
    found = {}
    for d, _dirs, names in os.walk(out):
        for n in names:
            path = os.path.join(d, n)
            rel = os.path.relpath(path, out)
            with open(path, "rb") as f:
                data = f.read()
            if n.endswith(".json"):
                try:
                    obj = json.loads(data.decode().replace(os.path.abspath(out), "OUT"))
                except ValueError:      # a damaged file: compared as it is
                    found[rel] = hashlib.sha256(data).hexdigest()
                    continue
                if rel == "summary.json":
                    for k in VOLATILE:
                        obj.pop(k, None)
                elif isinstance(obj, dict) and isinstance(obj.get("result"), dict):
                    obj["result"].pop("node", None)
                data = json.dumps(obj, sort_keys=True).encode()
            found[rel] = hashlib.sha256(data).hexdigest()
    return found


def tiny_config(source: str, out: str, **kw) -> IngestConfig:
    return IngestConfig(source=source, name="tiny", out=out,
                        image=ImageParams(max_resolution=32),
                        source_options=SourceOptions(shard_size=4), **kw)


class InProcess:
    """run_ingest's shard builds run here, serially (no Ray); records rebuilt shards."""

    def __init__(self) -> None:
        self.rebuilt: list[tuple[str, int]] = []

    def build_all(self, job, specs, on_result, driver_lane=True):
        results = []
        for spec in specs:
            r = build_shard(spec, job)
            if not r.reused:
                self.rebuilt.append((r.split, r.index))
            on_result(r)
            results.append(r)
        return results


@contextlib.contextmanager
def in_process(mp: pytest.MonkeyPatch):
    harness = InProcess()
    mp.setattr(ingest_job, "_build_all", harness.build_all)
    mp.setattr(ingest_job, "ray_session", lambda address=None: contextlib.nullcontext())
    yield harness


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tiny") / "src"
    generate_demo_data(root, TINY)
    return str(root)


@pytest.fixture(scope="module")
def reference(tiny_tree, tmp_path_factory) -> dict[str, str]:
    """The digest of an uninterrupted in-process build of ``tiny_tree``."""
    out = str(tmp_path_factory.mktemp("reference") / "out")
    with pytest.MonkeyPatch.context() as mp, in_process(mp) as harness:
        summary = ingest_job.run_ingest(tiny_config(tiny_tree, out), log=io.StringIO())
    assert summary["samples"] == 18 and len(harness.rebuilt) == 5   # 3 train + 2 val shards
    return output_digest(out)


# ------------------------------------------------------- fsync before rename, per writer

@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """os.fsync (by the path of its fd) and os.replace calls, in order."""
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.realpath(os.readlink(f"/proc/self/fd/{fd}"))))
        real_fsync(fd)

    def replace(src, dst, *args, **kw):
        events.append(("replace", os.path.realpath(src), os.path.realpath(dst)))
        real_replace(src, dst, *args, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def assert_durable(events: list[tuple]) -> list[str]:
    """Each rename is immediately preceded by an fsync of the renamed file and followed
    by an fsync of the destination directory; returns the destinations."""
    dests = []
    for i, event in enumerate(events):
        if event[0] != "replace":
            continue
        _, src, dst = event
        assert i > 0 and events[i - 1] == ("fsync", src), f"no fsync of {src} before its rename"
        assert i + 1 < len(events) and events[i + 1] == ("fsync", os.path.dirname(dst)), \
            f"no fsync of {os.path.dirname(dst)} after renaming {dst}"
        dests.append(dst)
    assert dests, "no rename happened: the writer was not exercised"
    return dests


def _tiny_jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def _write_bytes_atomic(d: str) -> list[str]:
    resolve(os.path.join(d, "a", "f.bin")).write_bytes_atomic(b"data")
    return ["a/f.bin"]


def _upload_file_atomic(d: str) -> list[str]:
    src = os.path.join(d, "src.bin")
    with open(src, "wb") as f:
        f.write(b"data")
    resolve(os.path.join(d, "b", "g.bin")).upload_file_atomic(src)
    return ["b/g.bin"]


def _shard_part(d: str) -> list[str]:
    from shardforge.build.shard import _write_part

    _write_part(resolve(os.path.join(d, "p.beton")),
                [BetonSample(_tiny_jpeg(), True, 8, 8, 1)], DEFAULT_PAGE_SIZE)
    return ["p.beton"]


def _save_state(d: str) -> list[str]:
    from shardforge.models.checkpoint import save_state

    save_state(os.path.join(d, "ck"), {"epoch": 1})
    return ["ck/state.pt"]


def _demo_and_marker(d: str) -> list[str]:
    from shardforge.catalog.prepare import DEMO_MARKER, materialise_demo

    spec = {"num_classes": 2, "train_per_class": 1, "val_per_class": 1, "min_side": 32,
            "max_side": 40}
    materialise_demo(d, spec, io.StringIO())
    return [DEMO_MARKER, *(os.path.relpath(p, d) for p in glob.glob(f"{d}/*/*/*.JPEG"))]


def _cue_conflict(d: str) -> list[str]:
    from shardforge.variants.stylize.cue_conflict import _write_if_changed

    _write_if_changed(os.path.join(d, "s.png"), b"png")
    return ["s.png"]


def _replay_cache(d: str) -> list[str]:
    from shardforge.stream.array_cache import META_FILE, open_or_build

    def fill(open_writable):
        with open_writable() as arrays:
            arrays["a"][:] = 7

    arrays = open_or_build(os.path.join(d, "c"), "digest", {"a": ((4,), np.uint8)}, fill)
    assert arrays["a"].tolist() == [7, 7, 7, 7]
    return ["c/a.npy", f"c/{META_FILE}"]


WRITERS = {"write_bytes_atomic": _write_bytes_atomic, "upload_file_atomic": _upload_file_atomic,
           "shard_part": _shard_part, "save_state": _save_state,
           "demo_and_marker": _demo_and_marker, "cue_conflict": _cue_conflict,
           "replay_cache": _replay_cache}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_writer_fsyncs_file_before_rename_and_dir_after(writer, tmp_path, calls):
    expected = WRITERS[writer](str(tmp_path))
    dests = assert_durable(calls)
    root = os.path.realpath(tmp_path)
    assert {os.path.join(root, e) for e in expected} <= set(dests)


def test_ingest_fsyncs_every_rename(tiny_tree, tmp_path, calls, monkeypatch):
    """A whole ingest: tars, index parts, .beton parts, manifests, merged .beton, wids
    indexes, index, rejects and summary: every one of them fsynced before and after its
    rename."""
    out = str(tmp_path / "out")
    with in_process(monkeypatch):
        ingest_job.run_ingest(tiny_config(tiny_tree, out), log=io.StringIO())
    dests = {os.path.relpath(p, os.path.realpath(out)) for p in assert_durable(calls)}
    assert len(dests) == 5 * 4 + 2 + 2 + 3
    assert {"summary.json", "index.parquet", "rejects.jsonl", "beton/tiny-train.beton",
            "beton/tiny-val.beton", "wds/tiny-train-000002.tar", "_work/val-000001.json",
            "wds/tiny-train.wids.json", "wds/tiny-val.wids.json",
            "_work/train-000000.beton", "_work/train-000001.parquet"} <= dests


# --------------------------------------------------------- damaged manifests / summaries

def _wrong_manifests(spec_hash: str, rec: dict) -> dict[str, object]:
    return {
        "list": [],
        "null": None,
        "string": "spec_hash",
        "no result": {"spec_hash": spec_hash},
        "result not a dict": {"spec_hash": spec_hash, "result": [1]},
        "no files": {"spec_hash": spec_hash, "result": {}},
        "files a list": {"spec_hash": spec_hash, "result": {"files": [rec]}},
        "files empty": {"spec_hash": spec_hash, "result": {"files": {}}},
        "record a list": {"spec_hash": spec_hash, "result": {"files": {"tar": [1, 2]}}},
        "size a string": {"spec_hash": spec_hash,
                          "result": {"files": {"tar": {**rec, "size": str(rec["size"])}}}},
        "size a float": {"spec_hash": spec_hash,
                         "result": {"files": {"tar": {**rec, "size": float(rec["size"])}}}},
        "no sha256": {"spec_hash": spec_hash, "result": {"files": {"tar": {"size": 4}}}},
        "unknown role": {"spec_hash": spec_hash, "result": {"files": {"other": rec}}},
    }


def test_damaged_manifest_is_not_complete(tmp_path):
    data = resolve(str(tmp_path / "f.tar"))
    data.write_bytes_atomic(b"abcd")
    rec = {"size": 4, "sha256": hashlib.sha256(b"abcd").hexdigest()}
    manifest = resolve(str(tmp_path / "m.json"))
    write_manifest(manifest, "h", {"files": {"tar": rec}, "x": 1})
    assert verified_result(manifest, "h", {"tar": data}) == {"files": {"tar": rec}, "x": 1}
    cases = _wrong_manifests("h", rec)
    for label, obj in cases.items():
        manifest.write_bytes_atomic(json.dumps(obj).encode())
        assert verified_result(manifest, "h", {"tar": data}) is None, label
    assert len(cases) == 13


WRONG_SUMMARIES = ("list", "no formats", "formats a list", "wds a list", "no index",
                   "size a string", "no path", "path an int")


def _damage_summary(summary: dict, kind: str) -> object:
    s = json.loads(json.dumps(summary))
    if kind == "list":
        return []
    if kind == "no formats":
        del s["formats"]
    elif kind == "formats a list":
        s["formats"] = []
    elif kind == "wds a list":
        s["formats"]["wds"] = [1]
    elif kind == "no index":
        del s["index"]
    elif kind == "size a string":
        s["index"]["size"] = str(s["index"]["size"])
    elif kind == "no path":
        del s["formats"]["beton"]["train"]["path"]
    elif kind == "path an int":
        s["index"]["path"] = 3
    return s


@pytest.mark.parametrize("kind", WRONG_SUMMARIES)
def test_damaged_summary_is_not_complete_and_rerun_matches(kind, tiny_tree, reference,
                                                           tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    config = tiny_config(tiny_tree, out)
    with in_process(monkeypatch) as harness:
        ingest_job.run_ingest(config, log=io.StringIO())
        loc = resolve(out).join("summary.json")
        summary = json.loads(loc.read_bytes())
        job_hash = summary["job_hash"]
        assert ingest_job._verified_summary(config, job_hash) is not None
        loc.write_bytes_atomic(json.dumps(_damage_summary(summary, kind)).encode())
        assert ingest_job._verified_summary(config, job_hash) is None
        harness.rebuilt.clear()
        ingest_job.run_ingest(config, log=io.StringIO())
    # the .beton parts were deleted after the merge, so every shard is rebuilt
    assert len(harness.rebuilt) == 5
    assert output_digest(out) == reference


# ------------------------------------------------------------------ 4 artifacts x 4 damages

ARTIFACTS = ("tar", "part", "index", "manifest")
DAMAGES = ("truncate", "bitflip", "delete", "wrong")


def damage(path: str, kind: str, donor: str) -> None:
    """Damage the file at ``path``: truncate to half, flip one bit in the middle, delete,
    or "wrong": a manifest gets valid JSON with the right spec hash but sizes as strings;
    other files are replaced by ``donor`` (another shard's valid file of the same role)."""
    with open(path, "rb") as f:
        data = f.read()
    if kind == "truncate":
        data = data[:len(data) // 2]
    elif kind == "bitflip":
        data = bytearray(data)
        data[len(data) // 2] ^= 0x10
        data = bytes(data)
    elif kind == "delete":
        os.remove(path)
        return
    elif path.endswith(".json"):
        obj = json.loads(data)
        for rec in obj["result"]["files"].values():
            rec["size"] = str(rec["size"])
        data = json.dumps(obj).encode()
    else:
        with open(donor, "rb") as f:
            data = f.read()
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("kind", DAMAGES)
@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_damaged_artifact_rebuilds_exactly_that_shard(artifact, kind, tiny_tree, reference,
                                                      tmp_path, monkeypatch):
    """A build interrupted after every manifest was written (nothing committed), then one
    shard's file damaged: the rerun rebuilds that shard alone and matches the reference."""
    out = str(tmp_path / "out")
    config = tiny_config(tiny_tree, out)
    plan, job = ingest_job._plan(config), ingest_job._job(config)
    for spec in plan.shards:
        build_shard(spec, job)
    donor, victim = plan.shards[0], plan.shards[1]
    assert (victim.split, victim.index) == ("train", 1)
    before = output_digest(out)
    damage(shard_paths(job, victim)[artifact].path, kind,
           shard_paths(job, donor)[artifact].path)
    assert output_digest(out) != before
    with in_process(monkeypatch) as harness:
        summary = ingest_job.run_ingest(config, log=io.StringIO())
    assert harness.rebuilt == [("train", 1)]
    assert summary["shards_reused"] == 4
    assert output_digest(out) == reference


FINISHED_DAMAGES = {"tar bit flip": ("wds/tiny-train-000001.tar", "bitflip"),
                    "beton truncated": ("beton/tiny-val.beton", "truncate"),
                    "index deleted": ("index.parquet", "delete"),
                    "manifest wrong": ("_work/train-000002.json", "wrong")}


@pytest.mark.parametrize("case", sorted(FINISHED_DAMAGES))
def test_damage_after_a_finished_build(case, tiny_tree, reference, tmp_path, monkeypatch):
    """Damage after the commit (parts already deleted): the summary no longer verifies
    (or, for a manifest, the shard's record does not), the rerun rebuilds what it must
    and ends byte-identical."""
    out = str(tmp_path / "out")
    config = tiny_config(tiny_tree, out)
    rel, kind = FINISHED_DAMAGES[case]
    with in_process(monkeypatch) as harness:
        ingest_job.run_ingest(config, log=io.StringIO())
        assert output_digest(out) == reference
        damage(os.path.join(out, rel), kind, "")
        assert output_digest(out) != reference
        harness.rebuilt.clear()
        ingest_job.run_ingest(config, log=io.StringIO())
    if rel.endswith(".json"):
        # summary.json still verifies (manifests are not among its records): nothing is
        # redone now; the damaged manifest is rewritten the next time that shard is built
        assert harness.rebuilt == []
        damage(os.path.join(out, "index.parquet"), "delete", "")
        ingest_job.run_ingest(config, log=io.StringIO())
    else:
        assert len(harness.rebuilt) == 5      # no parts kept: every shard is rebuilt
    assert output_digest(out) == reference


def test_stale_temporaries_are_removed(tiny_tree, reference, tmp_path, monkeypatch):
    """A killed run's temporary files (``.NAME.tmp-XXXXXXXXXXXX``) do not survive a rerun."""
    out = str(tmp_path / "out")
    for rel in ("wds/.tiny-train-000000.tar.tmp-0123456789ab",
                "beton/.tiny-train.beton.tmp-abcdefabcdef", "_work/.train-000000.json.tmp-"
                "000000000000"):
        os.makedirs(os.path.dirname(os.path.join(out, rel)), exist_ok=True)
        with open(os.path.join(out, rel), "wb") as f:
            f.write(b"partial")
    with in_process(monkeypatch):
        ingest_job.run_ingest(tiny_config(tiny_tree, out), log=io.StringIO())
    assert output_digest(out) == reference


def test_kill_hook_does_nothing_unless_named(monkeypatch):
    from shardforge.engine import faults

    monkeypatch.delenv(faults.KILL_ENV, raising=False)
    faults.checkpoint("merge")
    monkeypatch.setenv(faults.KILL_ENV, "merge:2")
    faults.checkpoint("merge")          # n=1: not this one
    faults.checkpoint("index", 2)       # another point
    code = "from shardforge.engine.faults import checkpoint; checkpoint('merge', 2); print('x')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.path.join(REPO, "src")},
                          timeout=60)
    assert proc.returncode == -9 and proc.stdout == ""


# -------------------------------------------------------------- slow: SIGKILL with Ray

def _env(home: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SHARDFORGE_KILL_AT",
                                                            "SHARDFORGE_KILL_ONCE",
                                                            "RAY_ADDRESS")}
    env.update(PYTHONPATH=os.path.join(REPO, "src"), SHARDFORGE_HOME=home,
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **extra)
    return env


def _cli_ingest(source: str, out: str, env: dict, timeout: float = 300,
                extra: tuple[str, ...] = ()) -> int:
    """``shardforge ingest`` as a driver process with its own local Ray (its own session:
    whatever it leaves behind after a SIGKILL is stopped here, and only that)."""
    from helpers import kill_session

    proc = subprocess.Popen(
        [sys.executable, "-m", "shardforge.cli", "ingest", source, "--name", "tiny",
         "--out", out, "--max-res", "32", "--shard-size", "4", "--no-register", *extra],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        kill_session(proc, grace=2.0)
    if proc.returncode not in (0, -9):
        raise AssertionError(f"ingest exited {proc.returncode}: {err.decode()[-2000:]}")
    return proc.returncode


@pytest.fixture(scope="module")
def ray_reference(tiny_tree, tmp_path_factory) -> dict[str, str]:
    out = str(tmp_path_factory.mktemp("ray-reference") / "out")
    home = str(tmp_path_factory.mktemp("home"))
    assert _cli_ingest(tiny_tree, out, _env(home)) == 0
    return output_digest(out)


def _state_at(point: str, out: str) -> None:
    """Check the killed run stopped where it was told to (so the test is not vacuous)."""
    files = set(output_digest(out))
    parts = {f for f in files if f.startswith("_work/") and f.endswith(".beton")}
    manifests = {f for f in files if f.startswith("_work/") and f.endswith(".json")}
    summary = "summary.json" in files
    if point == "build:2":
        assert 2 <= len(manifests) < 5 and not summary, files
    elif point == "manifests":
        assert len(manifests) == 5 and not any(f.startswith("beton/") for f in files), files
    elif point == "merge":
        assert any(f.startswith("beton/.tiny-") and ".tmp-" in f for f in files), files
    elif point == "index":
        assert "index.parquet" in files and not summary, files
    elif point == "delete-parts:2":
        assert summary and len(parts) == 3, files


KILL_POINTS = ("build:2", "manifests", "merge", "index", "delete-parts:2")


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_driver_sigkill_then_rerun_is_byte_identical(point, tiny_tree, ray_reference, tmp_path):
    out, home = str(tmp_path / "out"), str(tmp_path / "home")
    assert _cli_ingest(tiny_tree, out, _env(home, SHARDFORGE_KILL_AT=point)) == -9
    _state_at(point, out)
    assert output_digest(out) != ray_reference
    assert _cli_ingest(tiny_tree, out, _env(home)) == 0
    assert output_digest(out) == ray_reference


@pytest.mark.slow
def test_worker_sigkill_mid_shard_job_completes_byte_identical(tiny_tree, ray_reference,
                                                               tmp_path):
    """A Ray task process dies after writing its shard's tar, before the manifest (once):
    Ray retries the task, the job exits 0, the bytes match."""
    out, home = str(tmp_path / "out"), str(tmp_path / "home")
    once = str(tmp_path / "killed-once")
    env = _env(home, SHARDFORGE_KILL_AT="shard", SHARDFORGE_KILL_ONCE=once)
    # --workers-only: with the driver lane the driver may reach the point first (and die
    # as a driver, which test_driver_sigkill_then_rerun_is_byte_identical covers).
    assert _cli_ingest(tiny_tree, out, env, extra=("--workers-only",)) == 0
    assert os.path.exists(once)       # a worker did die there
    assert output_digest(out) == ray_reference


ACTOR_SCRIPT = textwrap.dedent("""
    import io, json, sys
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.sources.base import SourceOptions
    from shardforge.build.transform import Decoded, VariantSpec


    def mirror(samples, split):
        return [Decoded(s.key, s.label, s.pixels[:, ::-1].copy()) for s in samples]


    def make_transform():
        return mirror


    variant = VariantSpec(name="mirror", params={"flip": "horizontal"},
                          make_transform=make_transform, use_actors=True, num_actors=2)
    summary = run_ingest(IngestConfig(source=sys.argv[1], name="tinymirror", out=sys.argv[2],
                                      source_options=SourceOptions(shard_size=4),
                                      variant=variant),
                         log=io.StringIO())
    print(json.dumps({"samples": summary["samples"]}))
""")


def _actor_job(parent: str, out: str, env: dict, script: str) -> dict:
    from helpers import kill_session

    proc = subprocess.Popen([sys.executable, script, parent, out], env=env,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        stdout, err = proc.communicate(timeout=300)
    finally:
        kill_session(proc, grace=2.0)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(stdout.decode().strip().splitlines()[-1])


@pytest.mark.slow
def test_variant_actor_sigkill_job_completes_byte_identical(tiny_tree, tmp_path):
    """A variant actor dies mid-shard (once): its shard goes to the surviving actor, the
    job completes, and the bytes equal an uninterrupted run of the same variant."""
    home = str(tmp_path / "home")
    parent = str(tmp_path / "parent")
    assert _cli_ingest(tiny_tree, parent, _env(home)) == 0
    script = str(tmp_path / "mirror_job.py")
    with open(script, "w") as f:
        f.write(ACTOR_SCRIPT)
    clean, killed = str(tmp_path / "clean"), str(tmp_path / "killed")
    once = str(tmp_path / "killed-once")
    assert _actor_job(parent, clean, _env(home), script) == {"samples": 18}
    assert _actor_job(parent, killed, _env(home, SHARDFORGE_KILL_AT="shard",
                                            SHARDFORGE_KILL_ONCE=once), script) == {"samples": 18}
    assert os.path.exists(once)
    assert output_digest(killed) == output_digest(clean)


def test_parts_left_by_a_killed_delete_are_removed_on_rerun(tiny_tree, reference, tmp_path,
                                                            monkeypatch):
    """A run killed while deleting the .beton parts leaves a verified summary and some
    parts: the rerun ("nothing to do") removes them, so the tree matches the reference."""
    out = str(tmp_path / "out")
    with in_process(monkeypatch) as harness:
        ingest_job.run_ingest(tiny_config(tiny_tree, out, keep_parts=True), log=io.StringIO())
        assert len(glob.glob(f"{out}/_work/*.beton")) == 5
        harness.rebuilt.clear()
        ingest_job.run_ingest(tiny_config(tiny_tree, out), log=io.StringIO())
    assert harness.rebuilt == []
    assert output_digest(out) == reference


def test_failed_local_write_leaves_no_temporary(tmp_path):
    f = resolve(str(tmp_path / "x.bin"))
    with pytest.raises(TypeError):
        f.write_bytes_atomic(12345)     # not bytes: fails after the temporary was opened
    assert os.listdir(tmp_path) == []
