"""Issue 13, item 6: names from flags, cards and foreign files never become paths outside
the output or dataset root. Each hostile name is refused with one line naming where it
came from, the value and the fix; the filesystem is checked for anything created outside.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shardforge.names import UnsafeNameError, check_file_name, check_name, check_relative_path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _dataset(root: Path, *, split: str = "train", shard: str = "d-train-000000.tar",
             index_path: str = "index.parquet", name: str = "d") -> Path:
    """A minimal shardforge dataset (summary.json + index.parquet, no tars) at ``root``."""
    root.mkdir(parents=True)
    rows = {"key": ["a"], "label": [0], "split": [split], "shard": [shard], "offset": [512],
            "size": [10], "format": ["jpg"], "width": [8], "height": [8], "sha256": ["0" * 64]}
    pq.write_table(pa.table(rows), root / "index.parquet")
    summary = {"name": name, "classes": ["c0"], "index": {"path": index_path},
               "splits": {split: {"samples": 1}},
               "formats": {"wds": {split: [{"path": f"wds/{shard}"}]},
                           "beton": {split: {"path": f"beton/{name}-{split}.beton"}}}}
    (root / "summary.json").write_text(json.dumps(summary))
    return root


@pytest.mark.parametrize("bad", ["../../x", "/abs", "a/b", "..", ".hidden", "", "tr ain",
                                 "x\0y", "val\\..\\x"])
def test_names_rule(bad):
    with pytest.raises(UnsafeNameError, match="somewhere: split"):
        check_name(bad, "split", "somewhere", "fix it")
    with pytest.raises(UnsafeNameError):
        check_file_name(bad, "shard", "somewhere", "fix it")
    assert check_name("train_1-b", "split", "s", "f") == "train_1-b"
    assert check_file_name("demo-train-000001.tar", "shard", "s", "f")
    assert check_relative_path("reinforce/d-train-000000.parquet", "p", "s", "f")
    for path in ("../x.parquet", "/etc/passwd", "a//b", "a/../b", "a/"):
        with pytest.raises(UnsafeNameError):
            check_relative_path(path, "path", "s", "f")


def test_ingest_split_flag_climbing_out_is_refused(tmp_path, capsys):
    """`shardforge ingest --split ../../x`: exit 2, one line, nothing written anywhere."""
    from shardforge.cli import main

    src = tmp_path / "deep" / "src"
    (src / "cat").mkdir(parents=True)
    (src / "cat" / "a.jpg").write_bytes(b"not even an image")
    out = tmp_path / "deep" / "out"
    before = _tree(tmp_path)
    rc = main(["ingest", str(src), "--name", "d", "--out", str(out), "--split", "../../x",
               "--no-register"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.count("\n") == 0 and "--split" in err and "'../../x'" in err
    assert _tree(tmp_path) == before


def test_foreign_summary_paths_climbing_out_are_refused(tmp_path):
    """A summary.json whose index path, file paths, split or name climb out."""
    from shardforge.layout.dataset import open_dataset
    from shardforge.layout.info import load_dataset_info

    ok = _dataset(tmp_path / "ok")
    assert open_dataset(str(ok)).split("train").shard_urls[0].endswith("/ok/wds/d-train-000000.tar")
    assert load_dataset_info(str(ok)).tars["train"][0].endswith("/ok/wds/d-train-000000.tar")

    (tmp_path / "secret.parquet").write_bytes((ok / "index.parquet").read_bytes())
    bad_index = _dataset(tmp_path / "a" / "b", index_path="../../secret.parquet")
    with pytest.raises(UnsafeNameError, match=r"summary.json: index path '\.\./\.\./secret"):
        open_dataset(str(bad_index))

    bad_tar = _dataset(tmp_path / "c", shard="../../../etc/x.tar")
    with pytest.raises(UnsafeNameError, match="file path 'wds/../../../etc/x.tar'"):
        load_dataset_info(str(bad_tar))

    bad_name = _dataset(tmp_path / "n", name="../../n")
    with pytest.raises(UnsafeNameError, match=r"dataset name '\.\./\.\./n'"):
        open_dataset(str(bad_name))


@pytest.mark.parametrize("field,value", [("shard", "../../../../tmp/evil.tar"),
                                         ("shard", "/etc/passwd"),
                                         ("split", "../../x")])
def test_foreign_index_names_climbing_out_are_refused(tmp_path, field, value):
    """An index.parquet whose shard or split name climbs out: refused when a loader opens
    it and when a variant plans it as its parent source (nothing read or written)."""
    from shardforge.layout.dataset import open_dataset
    from shardforge.sources.base import SourceOptions
    from shardforge.sources.dataset import plan

    root = _dataset(tmp_path / "ds", **{field: value})
    before = _tree(tmp_path)
    with pytest.raises(UnsafeNameError) as err:
        open_dataset(str(root))
    msg = str(err.value)
    assert "index.parquet" in msg and repr(value) in msg and "re-run the ingest" in msg
    with pytest.raises(UnsafeNameError):
        plan(str(root), SourceOptions())
    assert _tree(tmp_path) == before


def test_reinforce_side_table_path_climbing_out_is_refused(tmp_path):
    from shardforge.stream.replay import load_reinforced_split

    root = _dataset(tmp_path / "ds")
    from shardforge.layout.dataset import open_dataset

    parent = open_dataset(str(root))
    reinforce = {"split": "train", "num_augs": 1, "top_k": 1, "seed": 0, "policy": {},
                 "files": [{"path": "../../stolen.parquet", "sha256": "0" * 64}]}
    with pytest.raises(UnsafeNameError, match=r"file path '\.\./\.\./stolen.parquet'"):
        load_reinforced_split(str(root), reinforce, parent, cache_dir=str(tmp_path / "c"))
    with pytest.raises(UnsafeNameError, match=r"split '\.\./x'"):
        load_reinforced_split(str(root), {**reinforce, "split": "../x"}, parent,
                              cache_dir=str(tmp_path / "c"))
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("field", ["split", "name"])
def test_hostile_card_split_or_name_is_refused(tmp_path, field):
    from shardforge.catalog.cards import load_card
    from shardforge.catalog.errors import CatalogError

    cards = tmp_path / "cards"
    cards.mkdir()
    name = "../../evil" if field == "name" else "evil"
    split = "../../x" if field == "split" else "train"
    card = cards / "evil.yaml"
    card.write_text(f"name: '{name}'\ndescription: d\nsource:\n  path: {tmp_path}/src\n"
                    f"pipeline:\n  name: ingest\n  params: {{split: '{split}'}}\n"
                    "licence: CC0-1.0\n")
    before = _tree(tmp_path)
    with pytest.raises((CatalogError, ValueError)) as err:
        load_card(card)
    msg = str(err.value)
    assert str(card) in msg and "../../" in msg
    assert _tree(tmp_path) == before
    assert not os.path.exists(tmp_path.parent / "x")


@pytest.mark.parametrize("field", ["name", "split"])
def test_reinforce_name_or_split_climbing_out_is_refused(tmp_path, field):
    """ReinforceConfig's name and split become reinforce/NAME-SPLIT-NNNNNN.parquet."""
    from shardforge.models.reference import ObserverRef
    from shardforge.variants.reinforce.engine import ReinforceConfig

    kwargs = {"name": "ok", "split": "train", field: "../../x"}
    with pytest.raises(UnsafeNameError, match=f"reinforce --{field}: .*'../../x'"):
        ReinforceConfig(parent=str(tmp_path), out=str(tmp_path / "out"),
                        teachers=(ObserverRef("t"),), **kwargs)
    assert not (tmp_path / "out").exists()
