"""Sources: class-folder trees, WebDataset tars and parquet files (local, no Ray)."""

from __future__ import annotations

import io
import os
import re
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset
from PIL import Image

from shardforge.formats.image import ImageParams, RejectedImage, process_image
from shardforge.sources import (
    RawSample,
    Reject,
    SourceOptions,
    detect_kind,
    plan_source,
    read_shard,
)
from shardforge.sources.base import make_key, split_from_name

KEY_RE = re.compile(r"[A-Za-z0-9_-]+")


def jpeg_bytes(value: int = 128, size: tuple[int, int] = (12, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (value, 255 - value, 40)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png_bytes(value: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (5, 5), value).save(buf, "PNG")
    return buf.getvalue()


def write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read_all(plan, options) -> list[RawSample | Reject]:
    return [item for spec in plan.shards for item in read_shard(spec, options)]


# --- folder -------------------------------------------------------------------------------


@pytest.fixture
def flat_tree(tmp_path):
    """ROOT/{a,b(empty),c}/... plus strays: no split folders."""
    root = tmp_path / "flat"
    for i in range(3):
        write(root / "a" / f"a{i}.jpg", jpeg_bytes(i))
    for i in range(2):
        write(root / "c" / f"c{i}.jpg", jpeg_bytes(100 + i))
    os.makedirs(root / "b")                                  # empty class folder
    write(root / "c" / "notes.txt", b"not an image\n")       # a candidate, rejected later
    write(root / "readme.txt", b"top-level file\n")          # outside class folders
    write(root / "a" / "sub" / "deep.jpg", jpeg_bytes(7))    # nested too deep
    write(root / "a" / ".DS_Store", b"\0\0")                  # hidden: skipped
    return root


def test_folder_flat_tree_classes_match_imagefolder(flat_tree):
    from torchvision.datasets import ImageFolder

    plan = plan_source(str(flat_tree), SourceOptions(shard_size=100))
    assert plan.kind == "folder" and detect_kind(str(flat_tree)) == "folder"
    assert plan.classes == ["a", "b", "c"]                  # empty b keeps its index
    tv = ImageFolder(str(flat_tree), allow_empty=True).class_to_idx
    assert {c: i for i, c in enumerate(plan.classes)} == {"a": 0, "b": 1, "c": 2} == tv
    assert plan.splits() == ["train"]                       # flat root: one split
    items = [item for spec in plan.shards for item in spec.items]
    labels = {rel: label for rel, label in items}
    assert labels == {"a/a0.jpg": 0, "a/a1.jpg": 0, "a/a2.jpg": 0,
                      "c/c0.jpg": 2, "c/c1.jpg": 2, "c/notes.txt": 2}
    assert sorted((r.origin, r.reason, r.split) for r in plan.rejects) == [
        ("a/sub/deep.jpg", "not directly inside a class folder", "train"),
        ("readme.txt", "not directly inside a class folder", "train"),
    ]


def test_folder_hidden_class_folder_skipped(flat_tree):
    """Unlike torchvision (which would make ``.ipynb_checkpoints`` class 0), hidden folders
    are no classes and hidden files no candidates."""
    write(flat_tree / ".ipynb_checkpoints" / "x.jpg", jpeg_bytes())
    plan = plan_source(str(flat_tree), SourceOptions())
    assert plan.classes == ["a", "b", "c"]
    listed = [rel for s in plan.shards for rel, _ in s.items] + [r.origin for r in plan.rejects]
    assert not any("/." in "/" + rel for rel in listed)


def test_folder_default_split_name(flat_tree):
    plan = plan_source(str(flat_tree), SourceOptions(default_split="validation"))
    assert plan.splits() == ["val"]
    assert {r.split for r in plan.rejects} == {"val"}


def test_folder_read_yields_bytes_and_labels(flat_tree):
    options = SourceOptions(shard_size=100)
    got = read_all(plan_source(str(flat_tree), options), options)
    assert all(isinstance(s, RawSample) for s in got)
    by_origin = {s.origin: s for s in got}
    assert set(by_origin) == {"a/a0.jpg", "a/a1.jpg", "a/a2.jpg", "c/c0.jpg", "c/c1.jpg",
                              "c/notes.txt"}
    for origin, sample in by_origin.items():
        assert sample.data == (flat_tree / origin).read_bytes()
        assert sample.label == (0 if origin.startswith("a/") else 2)
        assert sample.key == make_key(origin)
    # the non-image is listed and read, and rejected by the image step
    with pytest.raises(RejectedImage, match="not an image"):
        process_image(by_origin["c/notes.txt"].data, by_origin["c/notes.txt"].key,
                      ImageParams())
    assert process_image(by_origin["a/a0.jpg"].data, "k", ImageParams()).width == 12


def test_folder_split_tree(tmp_path):
    root = tmp_path / "splits"
    write(root / "train" / "cat" / "1.jpg", jpeg_bytes(1))
    write(root / "train" / "dog" / "2.jpg", jpeg_bytes(2))
    write(root / "val" / "dog" / "3.jpg", jpeg_bytes(3))
    write(root / "val" / "emu" / "4.jpg", jpeg_bytes(4))     # class only in val
    write(root / "train" / "stray.jpg", jpeg_bytes(5))        # not in a class folder
    write(root / "extra" / "x" / "5.jpg", jpeg_bytes(6))      # not a split folder: ignored
    plan = plan_source(str(root), SourceOptions(shard_size=10))
    assert plan.splits() == ["train", "val"]
    assert plan.classes == ["cat", "dog", "emu"]              # one index space for all splits
    items = {rel: label for spec in plan.shards for rel, label in spec.items}
    assert items == {"train/cat/1.jpg": 0, "train/dog/2.jpg": 1, "val/dog/3.jpg": 1,
                     "val/emu/4.jpg": 2}
    for spec in plan.shards:
        assert all(rel.startswith(spec.split + "/") for rel, _ in spec.items)
    assert [(r.origin, r.split) for r in plan.rejects] == [("train/stray.jpg", "train")]


def test_folder_validation_dir_is_val_split(tmp_path):
    root = tmp_path / "v"
    write(root / "train" / "a" / "1.jpg", jpeg_bytes())
    write(root / "validation" / "a" / "2.jpg", jpeg_bytes())
    write(root / "validation" / "stray.jpg", jpeg_bytes())
    plan = plan_source(str(root), SourceOptions())
    assert plan.splits() == ["train", "val"]
    assert [(r.origin, r.split) for r in plan.rejects] == [("validation/stray.jpg", "val")]


def test_folder_keys_unicode_spaces_dots(tmp_path):
    root = tmp_path / "keys"
    names = ["émile zola.v2.final.jpg", "日本 語.png", "a b.c.d.jpg", "x.jpg", "x.jpeg",
             "x", ".jpg.jpg", "-lead.jpg", "😀.jpg", "a_b.jpg", "a b.jpg"]
    for name in names:
        write(root / "clåss one" / name, jpeg_bytes())
    write(root / "clåss.two" / "x.jpg", jpeg_bytes())
    options = SourceOptions()
    plan = plan_source(str(root), options)
    assert plan.classes == ["clåss one", "clåss.two"]
    samples = read_all(plan, options)
    keys = [s.key for s in samples]
    origins = sorted(s.origin for s in samples)
    assert origins == sorted([f"clåss one/{n}" for n in names if n != ".jpg.jpg"]
                             + ["clåss.two/x.jpg"])      # ".jpg.jpg" is hidden
    assert {s.label for s in samples if s.origin.startswith("clåss.two/")} == {1}
    assert len(set(keys)) == len(keys)                # unique (x.jpg vs x.jpeg, a_b vs a b)
    for key in keys:
        assert KEY_RE.fullmatch(key), key             # no dots, slashes, spaces or unicode
    again = read_all(plan_source(str(root), options), options)
    assert {s.origin: s.key for s in again} == {s.origin: s.key for s in samples}   # stable


def test_make_key_properties():
    assert make_key("a/b.jpg") == make_key("a/b.jpg")
    assert make_key("a/b.jpg") != make_key("a/b.png")
    assert make_key("a.b/c") != make_key("a_b/c")
    long = make_key("d/" + "x" * 500 + ".jpg")
    assert KEY_RE.fullmatch(long) and len(long) <= 80 + 11
    assert KEY_RE.fullmatch(make_key("日本.jpg"))


def test_folder_shuffle_deterministic_and_chunked(tmp_path):
    root = tmp_path / "many"
    for c in "abc":
        for i in range(7):
            write(root / c / f"{i}.jpg", b"x")
    listing = lambda p: [rel for s in p.shards for rel, _ in s.items]   # noqa: E731
    p1 = plan_source(str(root), SourceOptions(shard_size=4, seed=0))
    p2 = plan_source(str(root), SourceOptions(shard_size=4, seed=0))
    p3 = plan_source(str(root), SourceOptions(shard_size=4, seed=1))
    ordered = plan_source(str(root), SourceOptions(shard_size=4, seed=None))
    assert p1.shards == p2.shards
    assert listing(p1) != listing(p3)
    assert sorted(listing(p1)) == sorted(listing(p3)) == listing(ordered)
    assert listing(ordered) == sorted(listing(ordered))
    assert listing(p1) != listing(ordered)
    assert [len(s.items) for s in p1.shards] == [4, 4, 4, 4, 4, 1]
    assert [s.index for s in p1.shards] == list(range(6))
    assert [s.name for s in p1.shards][:2] == ["train-000000", "train-000001"]
    assert len(set(listing(p1))) == 21
    with pytest.raises(ValueError):
        plan_source(str(root), SourceOptions(shard_size=0))


def test_folder_file_deleted_after_planning(flat_tree):
    options = SourceOptions(shard_size=100, seed=None)
    plan = plan_source(str(flat_tree), options)
    os.remove(flat_tree / "a" / "a1.jpg")
    got = read_all(plan, options)
    rejects = [r for r in got if isinstance(r, Reject)]
    assert [(r.origin, r.split) for r in rejects] == [("a/a1.jpg", "train")]
    assert rejects[0].reason.startswith("unreadable")
    assert len([s for s in got if isinstance(s, RawSample)]) == 5


def test_folder_without_class_folders(tmp_path):
    write(tmp_path / "only" / "x.jpg", jpeg_bytes())
    with pytest.raises(ValueError, match="class folders"):
        plan_source(str(tmp_path / "only"), SourceOptions(), kind="folder")
    with pytest.raises(ValueError, match="does not exist"):
        plan_source(str(tmp_path / "missing"), SourceOptions())


# --- webdataset ---------------------------------------------------------------------------


def write_tar(path, samples: list[dict]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with webdataset.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)


@pytest.fixture
def wds_dir(tmp_path):
    root = tmp_path / "wds"
    write_tar(root / "x-train-000000.tar",
              [{"__key__": f"s{i}", "jpg": jpeg_bytes(i), "cls": i % 3} for i in range(4)])
    write_tar(root / "x-train-000001.tar",
              [{"__key__": f"p{i}", "png": png_bytes(i), "json": {"label": 10 + i}}
               for i in range(3)])
    write_tar(root / "x-val-000000.tar",
              [{"__key__": "v0", "jpg": jpeg_bytes(9), "cls": 1},
               {"__key__": "noimg", "cls": 2},
               {"__key__": "nolabel", "jpg": jpeg_bytes(8)},
               {"__key__": "badcls", "jpg": jpeg_bytes(8), "cls": "cat"},
               {"__key__": "boollabel", "jpg": jpeg_bytes(8), "json": {"label": True}},
               {"__key__": "strlabel", "jpg": jpeg_bytes(8), "json": {"label": "3"}},
               {"__key__": "v1", "jpeg": jpeg_bytes(7), "json": {"label": 0}}])
    write_tar(root / "zz.tar", [{"__key__": "z", "jpg": jpeg_bytes(), "cls": 0}])
    return root


def test_wds_plan_one_spec_per_tar(wds_dir):
    assert detect_kind(str(wds_dir)) == "wds"
    plan = plan_source(str(wds_dir), SourceOptions())
    assert [(s.split, s.index, s.items) for s in plan.shards] == [
        ("train", 0, ("x-train-000000.tar",)),
        ("train", 1, ("x-train-000001.tar",)),
        ("val", 0, ("x-val-000000.tar",)),
        ("train", 2, ("zz.tar",)),                     # no split in the name: --split
    ]
    assert plan_source(str(wds_dir), SourceOptions(default_split="test")).shards[3].split == \
        "test"


def test_wds_read_samples_and_rejects(wds_dir):
    options = SourceOptions()
    plan = plan_source(str(wds_dir), options)
    first = list(read_shard(plan.shards[0], options))
    assert [(s.origin, s.label) for s in first] == [
        (f"x-train-000000.tar#s{i}", i % 3) for i in range(4)]
    assert [s.data for s in first] == [jpeg_bytes(i) for i in range(4)]
    second = list(read_shard(plan.shards[1], options))
    assert [(s.label, s.data) for s in second] == [(10 + i, png_bytes(i)) for i in range(3)]
    val = list(read_shard(plan.shards[2], options))
    kinds = [(type(v).__name__, v.origin.split("#")[1]) for v in val]
    assert kinds == [("RawSample", "v0"), ("Reject", "noimg"), ("Reject", "nolabel"),
                     ("Reject", "badcls"), ("Reject", "boollabel"), ("Reject", "strlabel"),
                     ("RawSample", "v1")]
    assert "no image" in val[1].reason and "label" in val[2].reason
    assert all(r.split == "val" for r in val if isinstance(r, Reject))
    assert val[6].label == 0 and val[6].data == jpeg_bytes(7)
    keys = [s.key for s in first + second + val if isinstance(s, RawSample)]
    assert len(set(keys)) == len(keys) and all(KEY_RE.fullmatch(k) for k in keys)


def test_wds_single_tar_url(wds_dir, monkeypatch):
    options = SourceOptions()
    for url in (str(wds_dir / "x-val-000000.tar"), "x-val-000000.tar"):
        monkeypatch.chdir(wds_dir)
        plan = plan_source(url, options)
        assert [(s.split, s.items) for s in plan.shards] == [("val", ("x-val-000000.tar",))]
        monkeypatch.chdir(wds_dir.parent)       # reading must not depend on the cwd
        got = read_all(plan, options)
        assert [s.origin for s in got if isinstance(s, RawSample)] == [
            "x-val-000000.tar#v0", "x-val-000000.tar#v1"]


def test_wds_tar_built_with_tarfile_and_subdirs(tmp_path):
    root = tmp_path / "t"
    os.makedirs(root / "val")
    with tarfile.open(root / "val" / "part.tar", "w") as tar:
        for name, data in [("d/a.JPG", jpeg_bytes(1)), ("d/a.label", b" 5\n"),
                           ("d/b.webp", b"W"), ("d/b.target", b"6"), ("README", b"x")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    options = SourceOptions()
    plan = plan_source(str(root), options)
    assert [(s.split, s.items) for s in plan.shards] == [("val", ("val/part.tar",))]
    got = read_all(plan, options)
    assert [(s.origin, s.label) for s in got] == [("val/part.tar#d/a", 5),
                                                  ("val/part.tar#d/b", 6)]


def test_wds_truncated_tar(tmp_path):
    root = tmp_path / "trunc"
    write_tar(root / "a-train-0.tar",
              [{"__key__": f"s{i}", "jpg": jpeg_bytes(i, (64, 64)), "cls": 0} for i in range(6)])
    path = root / "a-train-0.tar"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    options = SourceOptions()
    got = read_all(plan_source(str(root), options), options)
    assert isinstance(got[-1], Reject) and "unreadable tar" in got[-1].reason
    assert all(isinstance(s, RawSample) for s in got[:-1]) and len(got) >= 2


def test_wds_no_tars(tmp_path):
    with pytest.raises(ValueError, match=r"\.tar"):
        plan_source(str(tmp_path), SourceOptions(), kind="wds")


# --- parquet ------------------------------------------------------------------------------


def images(n: int) -> list[bytes]:
    return [jpeg_bytes(i * 20) for i in range(n)]


def test_parquet_bytes_column_spans_row_groups(tmp_path):
    path = tmp_path / "pq" / "train-00000.parquet"
    os.makedirs(path.parent)
    data = images(10)
    pq.write_table(pa.table({"image": data, "label": list(range(10))}), path,
                   row_group_size=3)
    assert pq.ParquetFile(path).num_row_groups == 4
    options = SourceOptions(shard_size=4)
    assert detect_kind(str(path.parent)) == "parquet"
    plan = plan_source(str(path.parent), options)
    assert [(s.split, s.index, s.items) for s in plan.shards] == [
        ("train", 0, ("train-00000.parquet", 0, 4)),
        ("train", 1, ("train-00000.parquet", 4, 8)),
        ("train", 2, ("train-00000.parquet", 8, 10)),
    ]
    for spec in plan.shards:
        _, start, stop = spec.items
        got = list(read_shard(spec, options))
        assert [(s.origin, s.label, s.data) for s in got] == [
            (f"train-00000.parquet#{i}", i, data[i]) for i in range(start, stop)]
    keys = [s.key for s in read_all(plan, options)]
    assert len(set(keys)) == 10 and all(KEY_RE.fullmatch(k) for k in keys)


def test_parquet_hf_struct_column_and_key_column(tmp_path):
    root = tmp_path / "hf"
    os.makedirs(root / "val")
    data = images(7)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "img": pa.array([{"bytes": b, "path": f"{i}.jpg"} for i, b in enumerate(data)],
                        image_type),
        "target": pa.array(range(7), pa.int64()),
        "id": [f"id-{i}" for i in range(7)],
    })
    pq.write_table(table, root / "train-0.parquet", row_group_size=3)
    pq.write_table(table.slice(0, 2), root / "val" / "part.parquet", row_group_size=3)
    options = SourceOptions(shard_size=4, image_column="img", label_column="target")
    plan = plan_source(str(root), options)
    assert [(s.split, s.index, s.items) for s in plan.shards] == [
        ("train", 0, ("train-0.parquet", 0, 4)),
        ("train", 1, ("train-0.parquet", 4, 7)),
        ("val", 0, ("val/part.parquet", 0, 2)),
    ]
    got = read_all(plan, options)
    assert [(s.origin, s.label, s.data) for s in got] == (
        [(f"train-0.parquet#{i}", i, data[i]) for i in range(7)]
        + [(f"val/part.parquet#{i}", i, data[i]) for i in range(2)])
    keyed = SourceOptions(shard_size=4, image_column="img", label_column="target",
                          key_column="id")
    got = read_all(plan_source(str(root), keyed), keyed)
    assert [s.origin for s in got][:2] == ["train-0.parquet#id-0", "train-0.parquet#id-1"]


def test_parquet_missing_columns(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"image": images(2), "label": [0, 1]}), path)
    with pytest.raises(ValueError, match="'target'"):
        plan_source(str(path), SourceOptions(label_column="target"))
    with pytest.raises(ValueError, match="'jpg'"):
        plan_source(str(path), SourceOptions(image_column="jpg"))
    with pytest.raises(ValueError, match="'uid'"):
        plan_source(str(path), SourceOptions(key_column="uid"))


def test_parquet_bad_rows_rejected(tmp_path):
    path = tmp_path / "bad-val.parquet"
    img = jpeg_bytes()
    pq.write_table(pa.table({"image": [img, img, None, img],
                             "label": pa.array([1.0, None, 2.0, 3.0], pa.float64())}), path)
    pq.write_table(pa.table({"image": [img, img], "label": ["3", "x"]}),
                   tmp_path / "str-val.parquet")
    pq.write_table(pa.table({"image": [img, img], "label": [True, False]}),
                   tmp_path / "bool-val.parquet")
    pq.write_table(pa.table({"image": ["text", None], "label": [1, 2]}),
                   tmp_path / "text-val.parquet")
    options = SourceOptions()
    for name in ("bad-val", "str-val", "bool-val", "text-val"):
        got = read_all(plan_source(str(tmp_path / f"{name}.parquet"), options), options)
        assert got and all(isinstance(r, Reject) and r.split == "val" for r in got), name
    got = read_all(plan_source(str(path), options), options)
    assert "not an integer" in got[0].reason and "holds no bytes" in got[2].reason


def test_parquet_single_file_relative_url(tmp_path, monkeypatch):
    pq.write_table(pa.table({"image": images(3), "label": [0, 1, 2]}),
                   tmp_path / "d.parquet")
    monkeypatch.chdir(tmp_path)
    options = SourceOptions(shard_size=2)
    plan = plan_source("d.parquet", options)
    assert [s.items for s in plan.shards] == [("d.parquet", 0, 2), ("d.parquet", 2, 3)]
    assert [s.label for s in read_all(plan, options)] == [0, 1, 2]


def test_parquet_no_files(tmp_path):
    write(tmp_path / "x.txt", b"x")
    with pytest.raises(ValueError, match="no .parquet"):
        plan_source(str(tmp_path), SourceOptions(), kind="parquet")


# --- base -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,split", [
    ("x-train-000000.tar", "train"), ("val/part.parquet", "val"),
    ("data/validation-00000-of-00002.parquet", "val"), ("test_0.tar", "test"),
    ("trainval.tar", "other"), ("shard-000.tar", "other"), ("TRAIN.tar", "train"),
])
def test_split_from_name(name, split):
    assert split_from_name(name, "other") == split


def test_auto_shard_size_depends_on_split_size_only():
    from shardforge.sources.base import auto_shard_size, shard_size_for

    assert auto_shard_size(10) == 64                 # small splits: one or few shards
    assert auto_shard_size(3000) == 94               # ~32 shards
    assert auto_shard_size(1_281_167) == 1000        # ImageNet train: capped at 1000
    assert shard_size_for(SourceOptions(shard_size=7), 3000) == 7
    assert shard_size_for(SourceOptions(), 3000) == 94
