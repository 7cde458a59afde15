"""The wids shard index (``wds/NAME-SPLIT.wids.json``) written at commit: read by ``wids``
and ``widsindex`` exactly as the tars hold the samples, recorded and verified."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest
from helpers import BIN

from shardforge.layout.files import WIDS_KIND

wids = pytest.importorskip("wids")


def _summary(out: str) -> dict:
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)


def _tar_samples(out: str, summary: dict, split: str) -> list[dict[str, bytes]]:
    """Every sample of the split's tars, in shard then member order: {ext: bytes}."""
    samples: list[dict[str, bytes]] = []
    for rec in summary["formats"]["wds"][split]:
        with tarfile.open(os.path.join(out, rec["path"])) as tar:
            current, key = {}, None
            for m in tar.getmembers():
                k, ext = m.name.split(".", 1)
                if k != key and current:
                    samples.append(current)
                    current = {}
                key = k
                current["__key__"] = k.encode()
                current[ext] = tar.extractfile(m).read()
            if current:
                samples.append(current)
    return samples


@pytest.mark.parametrize("split", ["train", "val"])
def test_wids_reads_every_sample_as_the_tars_hold_it(demo_dataset, split, tmp_path):
    summary = _summary(demo_dataset)
    rec = summary["formats"]["wids"][split]
    assert rec["path"] == f"wds/demo-{split}.wids.json"
    path = os.path.join(demo_dataset, rec["path"])
    with open(path) as f:
        doc = json.load(f)
    tars = summary["formats"]["wds"][split]
    assert doc == {"__kind__": WIDS_KIND, "wids_version": 1, "name": f"demo-{split}",
                   "shardlist": [{"url": os.path.basename(t["path"]), "nsamples": t["samples"],
                                  "filesize": t["size"]} for t in tars]}
    ds = wids.ShardListDataset(path, cache_dir=str(tmp_path / "cache"), transformations=[])
    expected = _tar_samples(demo_dataset, summary, split)
    assert len(ds) == len(expected) == summary["splits"][split]["samples"]
    for i, want in enumerate(expected):
        got = ds[i]
        assert got["__key__"] == want["__key__"].decode()
        assert got[".cls"].read() == want["cls"] and got[".jpg"].read() == want["jpg"]
        assert json.loads(got[".json"].read())["label"] == int(want["cls"])


def test_widsindex_info_and_sample_read_the_index(demo_dataset):
    summary = _summary(demo_dataset)
    path = os.path.join(demo_dataset, summary["formats"]["wids"]["val"]["path"])
    widsindex = shutil.which("widsindex", path=BIN)
    if widsindex is None:
        pytest.skip("the widsindex command is not installed beside this Python")
    info = subprocess.run([widsindex, "info", path], capture_output=True, text=True,
                          check=True).stdout
    assert "name: demo-val" in info and "total samples: 20" in info
    first = _tar_samples(demo_dataset, summary, "val")[3]
    raw = subprocess.run([widsindex, "sample", path, "3", "--cat", ".cls"],
                         capture_output=True, check=True).stdout
    assert raw == first["cls"]


@pytest.mark.usefixtures("ray_local")
def test_wids_index_is_recorded_and_verified_by_the_catalog(demo_tree, tmp_path, capsys):
    from shardforge.build.config import IngestConfig
    from shardforge.catalog.ingest import ingest
    from shardforge.cli import main
    from shardforge.formats.image import ImageParams
    from shardforge.sources.base import SourceOptions

    home, out = str(tmp_path / "home"), str(tmp_path / "out")
    config = IngestConfig(source=demo_tree, name="widsdemo", out=out,
                          image=ImageParams(max_resolution=48),
                          source_options=SourceOptions(shard_size=32))
    summary = ingest(config, home=home, log=io.StringIO())
    assert main(["catalog", "verify", "widsdemo", "--home", home]) == 0
    capsys.readouterr()
    index = os.path.join(out, summary["formats"]["wids"]["train"]["path"])
    with open(index, "a") as f:
        f.write(" ")                                            # one byte more
    assert main(["catalog", "verify", "widsdemo", "--home", home]) == 1
    report = capsys.readouterr()
    assert "wids[train]" in report.out + report.err
    # A rerun does not take the build as finished: it commits again, the same index.
    log = io.StringIO()
    again = ingest(config, home=home, log=log)
    assert "nothing to do" not in log.getvalue()
    assert again["formats"]["wids"] == summary["formats"]["wids"]
    assert main(["catalog", "verify", "widsdemo", "--home", home]) == 0


def test_an_output_wds_dir_is_still_detected_as_webdataset(demo_dataset):
    from shardforge.sources import detect_kind

    wds_dir = os.path.join(demo_dataset, "wds")
    assert any(n.endswith(".wids.json") for n in os.listdir(wds_dir))
    assert detect_kind(wds_dir) == "wds"
