"""On a tiny ingested dataset: ``shardforge eval`` (cli_eval), checkpoint files, and the
WebDataset -> Ray Data decoding (shardforge.stream.ray_data)."""

from __future__ import annotations

import argparse
import glob
import json
import os
import tarfile

import numpy as np
import pytest
import torch

from shardforge.cli.eval import add_eval_parser
from shardforge.models.archs import build_model
from shardforge.models.checkpoint import (
    STATE_FORMAT,
    checkpoint_name,
    find_state_file,
    latest_checkpoint,
    save_state,
)
from shardforge.stream.ray_data import decode_wds_sample, preprocess_batch, to_model_input
from shardforge.train.config import TrainConfig


@pytest.fixture(scope="module")
def tiny(demo_dataset) -> str:
    """The session demo tree (10 classes, 60 train / 20 val) ingested at max-res 96."""
    return demo_dataset


def _fake_run(run_dir: str, classes: list[str], epochs: int = 2) -> None:
    cfg = TrainConfig.from_dict({"validation": {"res": 48}, "model": {"arch": "small_cnn"}})
    spec = {"arch": "small_cnn", "num_classes": len(classes), "blurpool": True, "width": 8}
    for e in range(1, epochs + 1):
        save_state(os.path.join(run_dir, checkpoint_name(e)), {
            "format": STATE_FORMAT, "epochs_done": e, "model_spec": spec, "classes": classes,
            "model": build_model(**spec).state_dict(), "config": cfg.to_dict()})


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_eval_checkpoint_json(tiny, tmp_path, capsys):
    classes = json.load(open(os.path.join(tiny, "summary.json")))["classes"]
    run_dir = str(tmp_path / "run")
    _fake_run(run_dir, classes)
    assert latest_checkpoint(run_dir).endswith("checkpoint_epoch0002/state.pt")
    assert find_state_file(os.path.join(run_dir, "checkpoint_epoch0001")).endswith(
        "checkpoint_epoch0001/state.pt")

    args = _parse(["eval", run_dir, "--data", tiny, "--json", "--workers", "1"])
    assert args.handler(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 20 and result["res"] == 48 and result["epochs_done"] == 2
    for key in ("top1", "top5", "top1_tta", "top5_tta"):
        assert 0.0 <= result[key] <= 1.0
    assert result["top5"] >= result["top1"] and result["top5_tta"] >= result["top1_tta"]


def test_eval_errors_exit_2(tiny, tmp_path, capsys):
    args = _parse(["eval", str(tmp_path / "nothing"), "--data", tiny])
    assert args.handler(args) == 2
    assert "no checkpoint" in capsys.readouterr().err
    run_dir = str(tmp_path / "other")
    _fake_run(run_dir, ["a", "b"], epochs=1)
    args = _parse(["eval", run_dir, "--data", tiny])
    assert args.handler(args) == 2
    assert "classes" in capsys.readouterr().err


def _tar_samples(path: str) -> list[dict]:
    """Group a tar's members into WebDataset samples, as read_webdataset does."""
    samples: dict[str, dict] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(member).read()
    return list(samples.values())


def test_wds_decode_and_preprocess_batch(tiny):
    tar = sorted(glob.glob(os.path.join(tiny, "wds", "demo-val-*.tar")))[0]
    rows = [decode_wds_sample(s) for s in _tar_samples(tar)]
    assert rows and all(set(r) == {"image", "is_png", "width", "height", "label"} for r in rows)
    assert max(max(r["width"], r["height"]) for r in rows) == 96
    batch = {k: np.array([r[k] for r in rows], dtype=object if k == "image" else None)
             for k in rows[0]}
    for train in (True, False):
        out = preprocess_batch(batch, train=train, res=40, seed=0)
        assert out["image"].shape == (len(rows), 40, 40, 3) and out["image"].dtype == np.uint8
        assert out["label"].tolist() == [r["label"] for r in rows]
    x = to_model_input(torch.from_numpy(out["image"]), res=32)
    assert x.shape == (len(rows), 3, 32, 32) and x.dtype == torch.float32
    with pytest.raises(ValueError, match="no .jpg"):
        decode_wds_sample({"__key__": "k", "cls": b"1", "json": b"{}"})


@pytest.mark.slow
def test_ray_data_reads_shardforge_tars(tiny):
    from shardforge.stream.ray_data import make_split_dataset

    tars = sorted(glob.glob(os.path.join(tiny, "wds", "demo-val-*.tar")))
    ds = make_split_dataset(tars, train=False, res=32)
    batches = list(ds.iter_torch_batches(batch_size=8, dtypes={"image": torch.uint8,
                                                               "label": torch.int64}))
    assert sum(len(b["label"]) for b in batches) == 20
    assert batches[0]["image"].shape[1:] == (32, 32, 3)


def test_wds_train_workers_persist_until_the_resolution_changes(tiny, tmp_path):
    """``data.loader: wds``: the train loader's worker processes serve every epoch at one
    resolution (reshuffled each epoch) and are replaced when progressive resizing changes
    the crop size."""
    from shardforge.layout.dataset import open_dataset
    from shardforge.layout.info import load_dataset_info
    from shardforge.train.data import WdsEpochData
    from shardforge.train.session import LocalSession

    cfg = TrainConfig.from_dict({
        "model": {"arch": "small_cnn"}, "data": {"loader": "wds", "num_workers": 2},
        "training": {"batch_size": 16, "epochs": 3},
        "resolution": {"min_res": 32, "max_res": 64, "start_ramp": 1, "end_ramp": 2},
        "validation": {"res": 32}})
    data = WdsEpochData(cfg, load_dataset_info(tiny), LocalSession(str(tmp_path)),
                        channels_last=False)
    n_train = len(open_dataset(tiny).split("train"))

    def epoch(e: int, res: int) -> list:
        batches = list(data.train_epoch(e, res))
        assert sum(len(b.labels) for b in batches) == n_train
        assert {tuple(b.images.shape[-2:]) for b in batches} == {(res, res)}
        return batches

    first = epoch(0, 32)
    loader, workers = data.train, [w.pid for w in data.train._iterator._workers]
    second = epoch(1, 32)
    assert data.train is loader
    assert [w.pid for w in data.train._iterator._workers] == workers     # same processes
    ids = [torch.cat([b.sample_ids for b in bs]).tolist() for bs in (first, second)]
    assert sorted(ids[0]) == sorted(ids[1]) and ids[0] != ids[1]         # reshuffled
    epoch(2, 64)
    assert data.train is not loader                                       # new crop size


def test_wds_train_worker_kind_thread_gives_the_process_batches(tiny, tmp_path):
    """``data.worker_kind: thread``: the trainer's epochs are the process mode's, byte for
    byte (images, labels, sample ids), at both resolutions."""
    from shardforge.layout.info import load_dataset_info
    from shardforge.train.data import WdsEpochData
    from shardforge.train.session import LocalSession

    runs = {}
    for kind in ("process", "thread"):
        cfg = TrainConfig.from_dict({
            "model": {"arch": "small_cnn"},
            "data": {"loader": "wds", "num_workers": 2, "worker_kind": kind},
            "training": {"batch_size": 16, "epochs": 2}, "validation": {"res": 32}})
        data = WdsEpochData(cfg, load_dataset_info(tiny), LocalSession(str(tmp_path / kind)),
                            channels_last=False)
        assert data.train.worker_kind == kind
        runs[kind] = [b for e, res in ((0, 32), (1, 64)) for b in data.train_epoch(e, res)]
    assert len(runs["thread"]) == len(runs["process"]) > 2
    for t, p in zip(runs["thread"], runs["process"], strict=True):
        assert torch.equal(t.images, p.images) and torch.equal(t.labels, p.labels)
        assert torch.equal(t.sample_ids, p.sample_ids)
    with pytest.raises(ValueError, match="data.worker_kind must be process or thread"):
        TrainConfig.from_dict({"data": {"worker_kind": "fiber"}})
