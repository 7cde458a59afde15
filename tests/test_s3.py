"""S3 storage and an end-to-end ingest against moto's S3 server, on 127.0.0.1 only.

The ``s3_server`` fixture runs ``moto.server.ThreadedMotoServer`` inside the test
process, bound to 127.0.0.1 on a free port, with dummy credentials in the environment
(set before Ray starts, so Ray's workers inherit them) and one bucket. Locations name
the server in the URL query, as users do for MinIO or Ceph:
``s3://BUCKET/PREFIX?endpoint_override=127.0.0.1:PORT&scheme=http``. No test builds an
s3:// URL without that query: pyarrow would then look the bucket up on AWS.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from shardforge import storage
from shardforge.build.config import IngestConfig
from shardforge.build.job import run_ingest
from shardforge.engine.cluster import ray_session
from shardforge.sources.base import SourceOptions
from shardforge.storage import resolve

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "shardforge-test"
LOOPBACK = "127.0.0.1"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # Never fall back to the EC2 metadata service (169.254.169.254) for anything.
    "AWS_EC2_METADATA_DISABLED": "true",
    # Nothing in ~/.aws may point the clients elsewhere.
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "RAY_USAGE_STATS_ENABLED": "0",
    # Read by Ray at import (see _loopback_ray); set here too for Ray's subprocesses.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
CLASSES = ("cat", "dog", "fox")
PER_CLASS = {"train": 8, "val": 2}     # 3 classes: 24 train + 6 val = 30 images
SHARD_SIZE = 4                         # 6 train shards + 2 val shards = 8 Ray tasks


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server on loopback with one bucket."""

    port: int
    client: object      # boto3 S3 client bound to the server

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def query(self) -> str:
        return f"endpoint_override={LOOPBACK}:{self.port}&scheme=http"

    def url(self, prefix: str) -> str:
        """``s3://BUCKET/PREFIX?endpoint_override=...&scheme=http``."""
        return f"s3://{BUCKET}/{prefix}?{self.query}" if prefix else f"s3://{BUCKET}?{self.query}"

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix`` (directory markers included), sorted."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                       Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def upload_tree(self, root: str, prefix: str) -> None:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root).replace(os.sep, "/")
                self.client.upload_file(path, BUCKET, f"{prefix}/{rel}")

    def download_tree(self, prefix: str, dest: str) -> None:
        """Download every object (not directory markers) under ``prefix/`` to ``dest``."""
        for key in self.keys(prefix + "/"):
            if key.endswith("/"):
                continue
            path = os.path.join(dest, *key[len(prefix) + 1:].split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(self.get(key))


@pytest.fixture(scope="module")
def s3_env() -> Iterator[None]:
    """Dummy AWS credentials for this module (and any Ray started while it is active)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                     "AWS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                     "https_proxy"):
            mp.delenv(name, raising=False)
        mp.setenv("NO_PROXY", LOOPBACK)
        yield


@pytest.fixture(scope="module")
def s3_server(s3_env) -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (free port) with bucket ``BUCKET``; stopped after."""
    server = moto_server.ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == LOOPBACK
        client = boto3.client("s3", endpoint_url=f"http://{LOOPBACK}:{port}",
                              region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        yield S3Server(port, client)
    finally:
        server.stop()


# --------------------------------------------------------------------------- storage


def test_resolve_s3_url_keeps_endpoint_query(s3_server):
    url = s3_server.url("unit/resolve")
    loc = resolve(url)
    assert isinstance(loc.fs, pafs.S3FileSystem)
    assert not loc.is_local
    assert loc.path == f"{BUCKET}/unit/resolve"
    assert loc.url == url
    # A trailing slash before the query is dropped, as it is without a query.
    assert resolve(s3_server.url("unit/resolve/")).url == url
    assert resolve(s3_server.url("unit/resolve/")).path == loc.path
    # The endpoint is really used: a write lands on the moto server.
    loc.join("probe.txt").write_bytes_atomic(b"probe")
    assert s3_server.get("unit/resolve/probe.txt") == b"probe"


def test_join_parent_url_round_trips_keep_query(s3_server):
    root = resolve(s3_server.url("unit/paths"))
    f = root.join("a", "b", "c.bin")
    assert f.path == f"{BUCKET}/unit/paths/a/b/c.bin"
    assert f.url == s3_server.url("unit/paths/a/b/c.bin")
    assert f.parent().url == root.join("a", "b").url == s3_server.url("unit/paths/a/b")
    assert f.parent().path == f"{BUCKET}/unit/paths/a/b"
    assert f.parent().parent().parent().url == root.url
    again = resolve(f.url)
    assert (again.path, again.url) == (f.path, f.url)
    assert root.child_url(f.path) == f.url
    tmp = f.tmp_sibling()
    assert tmp.parent().url == f.parent().url and tmp.parent().path == f.parent().path
    assert tmp.url.endswith("?" + s3_server.query)
    assert resolve(tmp.url).path == tmp.path
    # The bucket root: its parent is the store root, in path and URL alike.
    bucket = resolve(s3_server.url(""))
    assert bucket.path == BUCKET
    assert root.parent().parent().url == bucket.url
    assert bucket.parent().path == ""
    assert bucket.parent().url == f"s3://?{s3_server.query}"


def test_urls_of_unusual_names_round_trip(s3_server):
    root = resolve(s3_server.url("unit/names"))
    for name in ("with space.jpg", "percent%41.jpg", "hash#1.jpg", "plus+eq=.jpg",
                 "question?.jpg", "ünïcode.jpg"):
        f = root.join("cls x", name)
        f.write_bytes_atomic(name.encode())
        again = resolve(f.url)
        assert again.path == f.path, name
        assert again.read_bytes() == name.encode()
        assert again.url.endswith("?" + s3_server.query)
    with pytest.raises(ValueError, match="%23"):
        resolve(f"s3://{BUCKET}/a#b?{s3_server.query}")


@pytest.fixture(params=["s3", "local"])
def io_root(request, tmp_path):
    """The same directory API on the S3 server and on a local directory."""
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        return server, resolve(server.url("unit/io"))
    return None, resolve(str(tmp_path / "io"))


def test_file_operations(io_root, tmp_path):
    server, root = io_root
    root.makedirs()
    f = root.join("sub", "data.bin")
    assert not f.exists() and f.size() is None
    f.delete()   # deleting a missing file is a no-op
    payload = bytes(range(256)) * 40
    f.write_bytes_atomic(payload)     # parent directories need no makedirs first
    assert f.exists()
    assert f.size() == len(payload)
    assert f.read_bytes() == payload
    assert f.read_range(1000, 300) == payload[1000:1300]
    assert f.read_range(len(payload) - 5, 5) == payload[-5:]
    assert f.sha256() == hashlib.sha256(payload).hexdigest()
    f.write_bytes_atomic(b"replaced")          # overwrite in place
    assert f.read_bytes() == b"replaced"

    local = tmp_path / "upload.bin"
    local.write_bytes(payload[::-1])
    up = root.join("sub", "deeper", "up.bin")
    up.upload_file_atomic(str(local))
    assert up.read_bytes() == payload[::-1] and up.size() == len(payload)

    assert root.list_files() == [f.path, up.path]
    assert root.list_files(recursive=False) == []
    assert root.join("sub").list_files(recursive=False) == [f.path]
    assert root.join("nothing-here").list_files() == []
    assert [root.child_url(p) for p in root.list_files()] == [f.url, up.url]
    if server is not None:   # no temporary objects left behind, only files and dir markers
        keys = server.keys(root.path.split("/", 1)[1] + "/")
        assert not [k for k in keys if ".tmp-" in k], keys

    f.delete()
    assert not f.exists() and f.size() is None
    assert root.list_files() == [up.path]
    up.delete()
    assert root.list_files() == []


def test_large_objects_skip_the_server_side_copy(s3_server, tmp_path, monkeypatch):
    """Above S3's 5 GiB CopyObject limit, files are written to their key directly.

    The limit is lowered here so a few bytes take that path; moto itself does not
    enforce S3's copy limit, so this checks the direct path works, not the limit.
    """
    monkeypatch.setattr(storage, "MAX_SERVER_COPY_BYTES", 10)
    root = resolve(s3_server.url("unit/large"))
    big = root.join("big.bin")
    big.write_bytes_atomic(b"x" * 100)
    local = tmp_path / "big-upload.bin"
    local.write_bytes(b"y" * 100)
    up = root.join("up.bin")
    up.upload_file_atomic(str(local))
    assert big.read_bytes() == b"x" * 100 and up.read_bytes() == b"y" * 100
    small = root.join("small.bin")
    small.write_bytes_atomic(b"z")             # still via a temporary name
    assert small.read_bytes() == b"z"
    files = [k for k in s3_server.keys("unit/large/") if not k.endswith("/")]
    assert files == ["unit/large/big.bin", "unit/large/small.bin", "unit/large/up.bin"]


def test_failed_write_removes_its_temporary(s3_server):
    """A write that fails after its temporary object was opened leaves nothing behind.

    (pyarrow completes an S3 upload when the stream is closed, even on an error, so the
    temporary object exists until the write removes it.)
    """
    f = resolve(s3_server.url("unit/failed")).join("x.bin")
    with pytest.raises(TypeError):
        f.write_bytes_atomic(12345)     # not bytes: fails inside the open stream
    assert not f.exists()
    assert [k for k in s3_server.keys("unit/failed/") if not k.endswith("/")] == []


# --------------------------------------------------------------------------- end to end


def _jpeg(rng: random.Random, width: int, height: int) -> bytes:
    from PIL import Image

    color = tuple(rng.randrange(256) for _ in range(3))
    img = Image.new("RGB", (width, height), color)
    for _ in range(6):   # a few blocks so images differ beyond their colour
        x, y = rng.randrange(width - 4), rng.randrange(height - 4)
        img.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + 4, y + 4))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> str:
    """ROOT/{train,val}/{cat,dog,fox}/*.jpg: 30 small JPEGs of a few sizes."""
    root = tmp_path_factory.mktemp("s3tree") / "src"
    rng = random.Random(7)
    for split, n in PER_CLASS.items():
        for cls in CLASSES:
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{cls}_{i:03d}.jpg").write_bytes(
                    _jpeg(rng, 40 + 4 * (i % 3), 32 + 4 * (i % 2)))
    return str(root)


def _expected_labels(root: str) -> dict[str, int]:
    """{relpath: ImageFolder label} for the tree."""
    out = {}
    for split in PER_CLASS:
        for label, cls in enumerate(sorted(CLASSES)):
            for name in sorted(os.listdir(os.path.join(root, split, cls))):
                out[f"{split}/{cls}/{name}"] = label
    return out


def _config(source: str, out: str) -> IngestConfig:
    # keep_parts: the rerun below checks that verified shards on S3 are reused, which
    # needs their .beton parts (dropped after the merge by default).
    return IngestConfig(source=source, name="s3demo", out=out, keep_parts=True,
                        source_options=SourceOptions(shard_size=SHARD_SIZE))


def _output_files(out: str) -> dict[str, bytes]:
    """Bytes of the tars, .betons, index and rejects below a local output dir."""
    found = {}
    for sub, suffix in (("wds", ".tar"), ("beton", ".beton")):
        for name in sorted(os.listdir(os.path.join(out, sub))):
            if name.endswith(suffix):
                with open(os.path.join(out, sub, name), "rb") as f:
                    found[f"{sub}/{name}"] = f.read()
    for name in ("index.parquet", "rejects.jsonl"):
        with open(os.path.join(out, name), "rb") as f:
            found[name] = f.read()
    return found


def _wds_samples(out: str, split: str) -> list[tuple[str, int, dict]]:
    import webdataset as wds

    wds_dir = os.path.join(out, "wds")
    urls = sorted(os.path.join(wds_dir, n) for n in os.listdir(wds_dir)
                  if n.startswith(f"s3demo-{split}-") and n.endswith(".tar"))
    ds = wds.WebDataset(urls, shardshuffle=False).to_tuple("__key__", "cls", "json")
    return [(key, int(cls), json.loads(meta)) for key, cls, meta in ds]


def _ffcv_labels(beton_path: str) -> list[int]:
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder
    from ffcv.loader import Loader, OrderOption

    loader = Loader(beton_path, batch_size=8, num_workers=1, order=OrderOption.SEQUENTIAL,
                    drop_last=False,
                    pipelines={"image": [CenterCropRGBImageDecoder((24, 24), 1.0)],
                               "label": [IntDecoder()]})
    labels: list[int] = []
    for images, batch_labels in loader:
        assert images.shape[1:] == (24, 24, 3)
        labels.extend(int(x) for x in batch_labels.ravel().tolist())
    return labels


@pytest.fixture(scope="module")
def _loopback_ray() -> Iterator[None]:
    """Make a local Ray really stay on 127.0.0.1 while this module starts one.

    On Linux, Ray replaces ``_node_ip_address="127.0.0.1"`` by the machine's routable
    address (``ray._private.services.resolve_ip_for_localhost``) and its GCS, raylet and
    workers then listen on every interface. With ``ENABLE_RAY_CLUSTER`` off (Ray's
    single-machine mode, the default on macOS and Windows) they use loopback. The
    constant is read from the environment when Ray is imported, hence the patch.
    """
    from ray._private import ray_constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False, raising=False)
        yield


@pytest.fixture(scope="module")
def ingested(s3_server, _loopback_ray, image_tree, tmp_path_factory):
    """The tree ingested S3 -> S3 and local -> local on one loopback Ray (started by
    shardforge's own ``ray_session`` after the credentials are in the environment)."""
    import ray

    if ray.is_initialized():
        pytest.skip("Ray already running in this process: its workers lack the S3 credentials")
    s3_server.upload_tree(image_tree, "src")
    base = tmp_path_factory.mktemp("s3out")
    local_out = str(base / "local-out")
    downloaded = str(base / "s3-out")
    with ray_session(num_cpus=4):
        node_ips = {n["NodeManagerAddress"] for n in ray.nodes()}
        assert node_ips == {LOOPBACK}, f"local Ray is not on loopback: {node_ips}"
        s3_summary = run_ingest(_config(s3_server.url("src"), s3_server.url("out")),
                                log=io.StringIO())
        local_summary = run_ingest(_config(image_tree, local_out), log=io.StringIO())
        s3_server.download_tree("out", downloaded)
        # Rerun with the summary gone: every shard is verified on S3 and reused.
        resolve(s3_server.url("out/summary.json")).delete()
        rerun_summary = run_ingest(_config(s3_server.url("src"), s3_server.url("out")),
                                   log=io.StringIO())
        # Rerun with the summary present: nothing to do at all.
        again_log = io.StringIO()
        again_summary = run_ingest(_config(s3_server.url("src"), s3_server.url("out")),
                                   log=again_log)
    assert not ray.is_initialized()
    return {"s3": s3_summary, "local": local_summary, "rerun": rerun_summary,
            "again": again_summary, "again_log": again_log.getvalue(),
            "downloaded": downloaded, "local_out": local_out}


def test_s3_ingest_summary_counts(ingested, s3_server):
    summary = ingested["s3"]
    assert summary["samples"] == 30
    assert summary["source_kind"] == "folder"
    assert summary["classes"] == sorted(CLASSES)
    assert summary["rejects"]["count"] == 0
    assert summary["splits"]["train"] == {"samples": 24, "shards": 6, "rejects": 0,
                                          "per_class": {"0": 8, "1": 8, "2": 8}}
    assert summary["splits"]["val"] == {"samples": 6, "shards": 2, "rejects": 0,
                                        "per_class": {"0": 2, "1": 2, "2": 2}}
    assert summary["out"] == s3_server.url("out")
    beton = summary["formats"]["beton"]["train"]
    assert beton["url"] == s3_server.url("out/beton/s3demo-train.beton")
    assert resolve(beton["url"]).sha256() == beton["sha256"]
    assert [r["samples"] for r in summary["formats"]["wds"]["train"]] == [4] * 6
    for rec in summary["formats"]["wds"]["val"]:
        assert rec["url"].endswith("?" + s3_server.query)
        assert resolve(rec["url"]).size() == rec["size"]
    with open(os.path.join(ingested["downloaded"], "summary.json")) as f:
        written = json.load(f)
    assert written["samples"] == 30 and written["job_hash"] == summary["job_hash"]
    # Nothing half-written or temporary is left in the bucket.
    assert not [k for k in s3_server.keys("out/") if ".tmp-" in k]


def test_s3_wds_shards_read_back(ingested, image_tree):
    out = ingested["downloaded"]
    expected = _expected_labels(image_tree)
    rows = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    seen = {}
    for split in PER_CLASS:
        samples = _wds_samples(out, split)
        assert [k for k, _, _ in samples] == [r["key"] for r in rows if r["split"] == split]
        for key, label, meta in samples:
            assert meta["key"] == key and meta["label"] == label
            assert expected[meta["origin"]] == label
            seen[meta["origin"]] = label
    assert seen == expected


def test_s3_beton_reads_with_ffcv_loader_in_index_order(ingested):
    out = ingested["downloaded"]
    rows = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    for split, n in (("train", 24), ("val", 6)):
        in_split = sorted((r for r in rows if r["split"] == split),
                          key=lambda r: r["beton_index"])
        assert [r["beton_index"] for r in in_split] == list(range(n))
        labels = _ffcv_labels(os.path.join(out, "beton", f"s3demo-{split}.beton"))
        assert labels == [r["label"] for r in in_split]


def test_s3_and_local_outputs_are_byte_identical(ingested):
    s3_files = _output_files(ingested["downloaded"])
    local_files = _output_files(ingested["local_out"])
    assert sorted(s3_files) == sorted(local_files)
    assert len([n for n in s3_files if n.endswith(".tar")]) == 8
    for name in s3_files:
        assert s3_files[name] == local_files[name], name
    s3_summary, local_summary = ingested["s3"], ingested["local"]
    for split in PER_CLASS:
        assert ([r["sha256"] for r in s3_summary["formats"]["wds"][split]]
                == [r["sha256"] for r in local_summary["formats"]["wds"][split]])
        assert (s3_summary["formats"]["beton"][split]["sha256"]
                == local_summary["formats"]["beton"][split]["sha256"])


def test_s3_rerun_reuses_verified_shards(ingested):
    rerun, first = ingested["rerun"], ingested["s3"]
    assert rerun["images_per_second"] == 0.0    # no image processed again
    assert rerun["job_hash"] == first["job_hash"]
    assert rerun["formats"] == first["formats"]
    assert ingested["again"]["created"] == rerun["created"]
    assert "nothing to do" in ingested["again_log"]


def test_imagenet_archives_read_in_place_on_s3(s3_server, tmp_path):
    """The imagenet-archive source plans and reads the archives on S3 by byte range: the
    same specs (but the source URL) and the same bytes and labels as the local copy."""
    from imagenet_archive import make_download

    from shardforge.sources import detect_kind, plan_source, read_shard

    local = str(tmp_path / "imagenet")
    expected = make_download(local)
    s3_server.upload_tree(local, "imagenet")
    url = s3_server.url("imagenet")
    assert detect_kind(url) == "imagenet-archive"
    options = SourceOptions(shard_size=4)
    plan, local_plan = plan_source(url, options), plan_source(local, options)
    assert plan.classes == local_plan.classes and plan.rejects == []
    assert [s.items for s in plan.shards] == [s.items for s in local_plan.shards]
    items = [i for spec in plan.shards for i in read_shard(spec, options)]
    assert {i.origin: (plan.classes[i.label], i.data) for i in items} == expected


def test_catalog_entries_are_written_to_and_synced_from_s3(tmp_path, s3_server):
    """Outputs on s3:// (moto on 127.0.0.1): the entry is written there and synced."""
    from test_catalog_sync import ENTRY, make_output, summary_of

    from shardforge.catalog.register import register_build
    from shardforge.catalog.store import Store
    from shardforge.catalog.sync import sync_catalog

    out = make_output(tmp_path, "s1")
    s3_server.upload_tree(str(out), "shared/s1")
    url = s3_server.url("shared/s1")
    build = register_build(tmp_path / "home-a", "alpha", {**summary_of(out), "out": url})
    assert json.loads(s3_server.get(f"shared/s1/{ENTRY}"))["build_id"] == build.build_id
    report = sync_catalog(s3_server.url("shared"), tmp_path / "home-b")
    assert [(i.status, i.ref) for i in report.items] == [("added", "alpha@v1")]
    assert Store(tmp_path / "home-b").get("alpha") == build


def test_catalog_verify_quick_and_full_on_s3(demo_dataset, tmp_path, s3_server,
                                             monkeypatch):
    """A build on s3:// (moto): quick verify reads tar headers, .beton tables and the
    parquet footer by range; a damaged .beton header is caught, then the full verify."""
    from shardforge import catalog
    from shardforge.catalog.register import register_build

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    s3_server.upload_tree(demo_dataset, "verify/demo")
    summary = json.loads(open(os.path.join(demo_dataset, "summary.json")).read())
    home = tmp_path / "home"
    register_build(home, "s3demo", {**summary, "out": s3_server.url("verify/demo")})
    assert catalog.verify("s3demo", home=home, quick=True).ok
    assert catalog.verify("s3demo", home=home).ok
    key = "verify/demo/beton/demo-train.beton"
    data = bytearray(s3_server.get(key))
    data[8:16] = (10 ** 9).to_bytes(8, "little")          # num_samples, same size
    s3_server.client.put_object(Bucket=BUCKET, Key=key, Body=bytes(data))
    (problem,) = catalog.verify("s3demo", home=home, quick=True).problems
    assert problem.label == "beton[train]" and "more than its" in problem.problem
    (problem,) = catalog.verify("s3demo", home=home).problems
    assert problem.label == "beton[train]" and "sha256" in problem.problem
