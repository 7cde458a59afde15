"""gs:// / az:// / hf:// locations through fsspec (``PyFileSystem(FSSpecHandler(fs))``).

gcsfs is replaced by ``tests/fake_fsspec/gcsfs`` (fsspec's DirFileSystem over a temporary
directory, under gcsfs's name, found through fsspec's registry), put on ``sys.path`` and
``PYTHONPATH`` before this module starts Ray, so the driver and Ray's workers both reach
``gs://`` without a network. The missing-package errors are checked with the imports made
to fail.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator

import fsspec
import pyarrow.fs as pafs
import pytest
from fsspec.registry import _registry
from helpers import file_bytes

from shardforge.build.config import IngestConfig
from shardforge.build.job import run_ingest
from shardforge.engine.cluster import ray_session
from shardforge.formats.image import ImageParams
from shardforge.layout.dataset import open_dataset
from shardforge.layout.reader import RangeReader
from shardforge.sources.base import SourceOptions
from shardforge.storage import FSSPEC_SCHEMES, resolve

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_fsspec")


def _forget_registered(protocols) -> None:
    """Drop fsspec's cached class for ``protocols`` (it imports a class once, then keeps it)."""
    for p in protocols:
        _registry.pop(p, None)


@pytest.fixture(scope="module")
def fake_gcs(tmp_path_factory) -> Iterator[str]:
    """gs:// served by the fake gcsfs from a temporary directory; the directory's path."""
    root = str(tmp_path_factory.mktemp("fake-gcs"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHARDFORGE_FAKE_GCS_ROOT", root)
        mp.setenv("PYTHONPATH", os.pathsep.join(
            [FAKE] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        mp.syspath_prepend(FAKE)
        mp.delitem(sys.modules, "gcsfs", raising=False)
        _forget_registered(("gs", "gcs"))
        try:
            yield root
        finally:
            _forget_registered(("gs", "gcs"))
            sys.modules.pop("gcsfs", None)


def test_gs_location_file_operations(fake_gcs):
    root = resolve("gs://bucket/unit?project=demo")
    assert isinstance(root.fs, pafs.PyFileSystem) and root.path == "bucket/unit"
    assert root.fs.handler.fs.options == {"project": "demo"}     # the query, as options
    f = root.join("sub dir", "data.bin")
    assert f.url == "gs://bucket/unit/sub%20dir/data.bin?project=demo"
    assert resolve(f.url).path == f.path == "bucket/unit/sub dir/data.bin"
    assert f.parent().url == "gs://bucket/unit/sub%20dir?project=demo"
    assert not f.exists() and f.size() is None
    f.write_bytes_atomic(b"0123456789")
    assert f.read_bytes() == b"0123456789" and f.size() == 10
    assert f.read_range(3, 4) == b"3456"
    assert f.sha256() == resolve(os.path.join(fake_gcs, "bucket/unit/sub dir/data.bin")).sha256()
    assert root.list_files() == ["bucket/unit/sub dir/data.bin"]   # no temporaries left
    assert root.child_url(root.list_files()[0]) == f.url
    f.delete()
    assert not f.exists() and root.list_files() == []


@pytest.fixture(scope="module")
def ingested(fake_gcs, demo_tree, tmp_path_factory) -> dict:
    """The demo tree ingested gs:// -> gs:// and local -> local on one private Ray that
    starts after the fake is on PYTHONPATH (so its workers import it too)."""
    import ray

    if ray.is_initialized():
        pytest.skip("Ray already running in this process: its workers lack the fake gcsfs")
    fs = fsspec.filesystem("file")
    fs.put(demo_tree, os.path.join(fake_gcs, "bucket", "src"), recursive=True)
    local_out = str(tmp_path_factory.mktemp("fsspec-local") / "out")

    def config(src: str, out: str) -> IngestConfig:
        return IngestConfig(source=src, name="gsdemo", out=out,
                            image=ImageParams(max_resolution=64),
                            source_options=SourceOptions(shard_size=16))

    with ray_session(num_cpus=2):
        gs = run_ingest(config("gs://bucket/src", "gs://bucket/out"), log=io.StringIO())
        again_log = io.StringIO()
        run_ingest(config("gs://bucket/src", "gs://bucket/out"), log=again_log)
        local = run_ingest(config(demo_tree, local_out), log=io.StringIO())
    return {"gs": gs, "local": local, "local_out": local_out, "again": again_log.getvalue(),
            "gs_out": os.path.join(fake_gcs, "bucket", "out")}


def test_gs_ingest_matches_a_local_ingest_byte_for_byte(ingested):
    gs, local = ingested["gs"], ingested["local"]
    assert gs["samples"] == local["samples"] == 80 and gs["rejects"]["count"] == 0
    assert gs["out"] == "gs://bucket/out"
    assert all(r["url"].startswith("gs://bucket/out/wds/") for r in gs["formats"]["wds"]["train"])
    assert file_bytes(ingested["gs_out"]) == file_bytes(ingested["local_out"])
    assert "nothing to do" in ingested["again"]     # the rerun re-hashed every file on gs://


def test_gs_dataset_reads_back_by_byte_range(ingested):
    ds, local = open_dataset("gs://bucket/out"), open_dataset(ingested["local_out"])
    assert ds.num_samples == local.num_samples and ds.classes == local.classes
    split, ref = ds.split("val"), local.split("val")
    assert all(u.startswith("gs://bucket/out/wds/") for u in split.shard_urls)
    got = RangeReader(split.shard_urls).read(split.shard, split.offset, split.size)
    want = RangeReader(ref.shard_urls).read(ref.shard, ref.offset, ref.size)
    assert [bytes(b) for b in got] == [bytes(b) for b in want]


@pytest.mark.parametrize("url, package", [
    ("gs://bucket/data", "gcsfs"), ("gcs://bucket/data", "gcsfs"),
    ("az://container/data", "adlfs"), ("abfs://container/data", "adlfs"),
    ("hf://datasets/user/repo", "huggingface_hub"),
])
def test_missing_fsspec_package_names_the_pip_package(url, package, monkeypatch):
    scheme = url.split("://")[0]
    monkeypatch.setitem(sys.modules, package, None)          # import fails
    monkeypatch.delitem(_registry, scheme, raising=False)    # no class cached
    extra = FSSPEC_SCHEMES[scheme][1]
    with pytest.raises(ValueError, match=rf"needs the {package} package, which is not "
                       rf"installed .*pip install {package} \(or pip install "
                       rf"'shardforge\[{extra}\]'\)"):
        resolve(url)


def test_missing_fsspec_itself_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ValueError, match="needs fsspec and gcsfs, which are not installed"):
        resolve("gs://bucket/data")


def test_unknown_scheme_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"use a local path or an s3://, gs://, .*hf:// URL"):
        resolve("nosuch://bucket/data")
