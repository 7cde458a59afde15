"""The imagenet-archive source on a miniature ImageNet download (3 classes x 4 train images,
6 val images, a devkit written by scipy): plan, read, ingest and read back, bad input."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
from helpers import ffcv_labels, image_pixels, index_rows
from imagenet_archive import (
    PER_CLASS,
    VAL_WNIDS,
    WNIDS,
    jpeg,
    make_download,
    tar_bytes,
    val_name,
    write,
)

from shardforge.formats.beton import read_sample_bytes
from shardforge.formats.image import ImageParams
from shardforge.sources import RawSample, Reject, SourceOptions, detect_kind, plan_source
from shardforge.sources import read_shard as read_spec
from shardforge.sources.imagenet_labels import LabelError

KIND = "imagenet-archive"


@pytest.fixture
def download(tmp_path):
    root = str(tmp_path / "imagenet")
    return root, make_download(root)


def read_all(plan) -> list[RawSample | Reject]:
    return [item for spec in plan.shards for item in read_spec(spec, SourceOptions())]


def test_detects_the_download_directory_and_each_archive(download):
    root, _ = download
    assert detect_kind(root) == KIND
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        assert detect_kind(os.path.join(root, name)) == KIND


def test_plan_classes_specs_and_labels(download):
    root, expected = download
    plan = plan_source(root, SourceOptions(shard_size=4))
    assert plan.kind == KIND and plan.rejects == []
    assert plan.classes == WNIDS                              # sorted WNIDs
    train = [s for s in plan.shards if s.split == "train"]
    val = [s for s in plan.shards if s.split == "val"]
    assert [s.index for s in train] == [0, 1, 2]             # one spec per class tar
    assert [s.items[0][2] for s in train] == [f"{w}.tar" for w in WNIDS]
    assert [len(s.items) for s in val] == [4, 2]             # 6 val images in shards of 4
    items = read_all(plan)
    assert all(isinstance(i, RawSample) for i in items)
    got = {i.origin: (plan.classes[i.label], i.data) for i in items}
    assert got == expected                                   # every byte, every label
    assert len({i.key for i in items}) == len(items) == 3 * PER_CLASS + len(VAL_WNIDS)


def test_one_archive_file_is_one_split(download):
    root, _ = download
    plan = plan_source(os.path.join(root, "ILSVRC2012_img_val.tar"), SourceOptions())
    assert plan.splits() == ["val"] and plan.classes == WNIDS   # the devkit's leaf synsets
    labels = {i.origin.split("#")[1]: plan.classes[i.label] for i in read_all(plan)}
    assert labels == {val_name(i): w for i, w in enumerate(VAL_WNIDS, 1)}
    train = plan_source(os.path.join(root, "ILSVRC2012_img_train.tar"), SourceOptions())
    assert train.splits() == ["train"] and len(read_all(train)) == 3 * PER_CLASS


def test_labels_csv_instead_of_the_devkit(tmp_path):
    root = str(tmp_path / "imagenet")
    make_download(root, with_devkit=False)
    lines = ["filename,wnid"] + [f"{val_name(i)},{w}" for i, w in enumerate(VAL_WNIDS, 1)]
    write(root, "ILSVRC2012_val_labels.csv", "\n".join(lines).encode())
    plan = plan_source(root, SourceOptions(), kind=KIND)
    val = [i for i in read_all(plan) if "_val_" in i.origin]
    assert [plan.classes[i.label] for i in val] == VAL_WNIDS


def test_missing_labels_names_the_files_and_the_fix(tmp_path):
    root = str(tmp_path / "imagenet")
    make_download(root, with_devkit=False)
    with pytest.raises(ValueError, match="ILSVRC2012_img_val.tar has no labels: put "
                       "ILSVRC2012_devkit_t12.tar.gz .* or ILSVRC2012_val_labels.csv"):
        plan_source(root, SourceOptions())


def test_damaged_devkit_and_bad_csv_line_are_named(tmp_path):
    root = str(tmp_path / "imagenet")
    make_download(root, with_devkit=False)
    write(root, "ILSVRC2012_devkit_t12.tar.gz", b"not a tar.gz")
    with pytest.raises(LabelError, match="ILSVRC2012_devkit_t12.tar.gz: not a readable "
                       "tar.gz .*download the devkit again"):
        plan_source(root, SourceOptions())
    write(root, "ILSVRC2012_val_labels.csv", b"ILSVRC2012_val_00000001.JPEG\n")
    with pytest.raises(LabelError, match="ILSVRC2012_val_labels.csv: line 1 is "
                       ".*not 'filename,wnid'"):
        plan_source(root, SourceOptions())


def test_bad_members_are_rejected_by_name(tmp_path):
    root = str(tmp_path / "imagenet")
    broken = ("n09999999.tar", b"JFIF this is not a tar" * 40)
    readme = ("README.txt", b"hello")
    expected = make_download(root, train_extra=[broken, readme],
                             val_extra=[(val_name(99), jpeg(5))])
    plan = plan_source(root, SourceOptions())
    assert plan.classes == WNIDS + ["n09999999"]             # its index is kept
    planned = {r.origin: r.reason for r in plan.rejects}
    assert "not a class tar" in planned["ILSVRC2012_img_train.tar#README.txt"]
    assert planned["ILSVRC2012_img_val.tar#" + val_name(99)].startswith(
        f"no label: ILSVRC2012_devkit_t12.tar.gz has no line for {val_name(99)}")
    items = read_all(plan)
    rejects = {r.origin: r.reason for r in items if isinstance(r, Reject)}
    assert list(rejects) == ["ILSVRC2012_img_train.tar#n09999999.tar"]
    assert rejects["ILSVRC2012_img_train.tar#n09999999.tar"].startswith("not a tar archive")
    assert "download ILSVRC2012_img_train.tar again" in rejects[
        "ILSVRC2012_img_train.tar#n09999999.tar"]
    assert {i.origin for i in items if isinstance(i, RawSample)} == set(expected)


def test_truncated_class_tar_keeps_the_images_before_the_damage(tmp_path):
    root = str(tmp_path / "imagenet")
    make_download(root)
    good = [(f"n07777777_{i}.JPEG", jpeg(i, (64, 64))) for i in range(3)]
    inner = tar_bytes(good)
    cut = inner[:1536 + len(good[0][1]) + 700]          # into the second image's data
    write(root, "ILSVRC2012_img_train.tar", tar_bytes([("n07777777.tar", cut)]))
    os.remove(os.path.join(root, "ILSVRC2012_img_val.tar"))
    items = read_all(plan_source(root, SourceOptions()))
    assert [i.origin for i in items if isinstance(i, RawSample)] == [
        "ILSVRC2012_img_train.tar#n07777777.tar#n07777777_0.JPEG"]
    (reject,) = [i for i in items if isinstance(i, Reject)]
    assert reject.origin.endswith("#n07777777_1.JPEG") and "damaged class tar" in reject.reason


def test_an_archive_that_is_not_a_tar_stops_planning(tmp_path):
    root = str(tmp_path / "imagenet")
    os.makedirs(root)
    write(root, "ILSVRC2012_img_train.tar", b"<html>403 Forbidden</html>")
    with pytest.raises(ValueError, match="ILSVRC2012_img_train.tar is not a readable tar "
                       "archive .*download ILSVRC2012_img_train.tar again"):
        plan_source(root, SourceOptions())
    with pytest.raises(ValueError, match="holds neither ILSVRC2012_img_train.tar nor"):
        plan_source(str(tmp_path), SourceOptions(), kind=KIND)


@pytest.mark.usefixtures("ray_local")
def test_ingest_reads_back_the_same_pixels_in_both_formats(download, tmp_path):
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest

    root, expected = download
    out = str(tmp_path / "out")
    summary = run_ingest(IngestConfig(
        source=root, name="inet", out=out, source_options=SourceOptions(shard_size=4),
        image=ImageParams(max_resolution=None, write_mode="raw")), log=io.StringIO())
    assert summary["source_kind"] == KIND and summary["classes"] == WNIDS
    assert summary["splits"]["train"]["samples"] == 12 and summary["splits"]["val"]["samples"] == 6
    assert summary["splits"]["train"]["per_class"] == {"0": 4, "1": 4, "2": 4}
    assert summary["rejects"]["count"] == 0
    rows = index_rows(out)
    assert {r["origin"]: WNIDS[r["label"]] for r in rows} == {
        o: w for o, (w, _) in expected.items()}
    for split in ("train", "val"):
        beton = os.path.join(out, "beton", f"inet-{split}.beton")
        ordered = sorted((r for r in rows if r["split"] == split),
                         key=lambda r: r["beton_index"])
        assert ffcv_labels(beton) == [r["label"] for r in ordered]
        for row, raw in zip(ordered, read_sample_bytes(beton), strict=True):
            want = image_pixels(expected[row["origin"]][1])
            got = np.frombuffer(raw, np.uint8).reshape(row["height"], row["width"], 3)
            np.testing.assert_array_equal(got, want)
            with tarfile.open(os.path.join(out, "wds", row["shard"])) as tar:
                member = tar.extractfile(f"{row['key']}.png").read()
                cls = int(tar.extractfile(f"{row['key']}.cls").read())
                meta = json.loads(tar.extractfile(f"{row['key']}.json").read())
            np.testing.assert_array_equal(image_pixels(member), want)
            assert cls == row["label"] and meta["origin"] == row["origin"]


def test_truncated_val_archive_keeps_the_images_before_the_cut(download):
    root, _ = download
    path = os.path.join(root, "ILSVRC2012_img_val.tar")
    with tarfile.open(path) as tar:
        fourth = tar.getmember(val_name(4))
    with open(path, "r+b") as f:
        f.truncate(fourth.offset_data + fourth.size // 2)
    plan = plan_source(path, SourceOptions())
    assert [i.origin.split("#")[1] for i in read_all(plan)] == [val_name(i) for i in (1, 2, 3)]
    (reject,) = plan.rejects
    assert reject.origin == f"ILSVRC2012_img_val.tar#{val_name(4)}"
    assert "it and the members after it are lost" in reject.reason
