"""RDED distillation: selection, stitching, determinism, observers and their class order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shardforge.build.transform import Decoded
from shardforge.models.archs import build_model
from shardforge.models.checkpoint import STATE_FORMAT, save_state
from shardforge.models.reference import (
    ObserverRef,
    check_class_order,
    load_observer,
    observer_identity,
)
from shardforge.variants.rded.transform import (
    RdedParams,
    candidate_crops,
    choose_images,
    class_rng,
    crop_box,
    distill_class,
    make_variant,
    random_class,
    select,
    stitch,
)

CLASSES = ("circle", "square", "triangle")


def _class_samples(label: int, count: int, seed: int = 0) -> list[Decoded]:
    rng = np.random.default_rng([seed, label])
    return [Decoded(f"img{label}_{i:03d}", label,
                    rng.integers(0, 256, size=(40 + i % 7, 48 - i % 5, 3), dtype=np.uint8))
            for i in range(count)]


def _tiny_observer(num_classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes, width=4).eval()


def _save_checkpoint(directory, model: nn.Module, classes) -> str:
    return save_state(str(directory), {
        "format": STATE_FORMAT, "epochs_done": 1, "model": model.state_dict(),
        "model_spec": {"arch": "small_cnn", "num_classes": len(classes), "blurpool": False,
                       "width": 4}, "classes": list(classes)})


# -- algorithm ------------------------------------------------------------------------


def test_crop_box_square_inside_and_seeded():
    rng = np.random.default_rng(3)
    boxes = [crop_box(50, 30, rng) for _ in range(200)]
    for x0, y0, x1, y1 in boxes:
        assert x1 - x0 == y1 - y0 > 0 and 0 <= x0 < x1 <= 50 and 0 <= y0 < y1 <= 30
    again = np.random.default_rng(3)
    assert boxes == [crop_box(50, 30, again) for _ in range(200)]


def test_stitch_grid_order():
    ipc, factor, p = 3, 2, 2
    patches = np.stack([np.full((p, p, 3), k, dtype=np.uint8) for k in range(ipc * factor ** 2)])
    images = stitch(patches, ipc, factor)
    assert images.shape == (ipc, 4, 4, 3)
    for j in range(ipc):
        # row-major grid of ranked patches j, n+j, 2n+j, 3n+j
        assert images[j, 0, 0, 0] == j and images[j, 0, p, 0] == ipc + j
        assert images[j, p, 0, 0] == 2 * ipc + j and images[j, p, p, 0] == 3 * ipc + j
    with pytest.raises(ValueError, match="needs 12 patches"):
        stitch(patches[:5], ipc, factor)


def test_select_best_candidate_then_lowest_images():
    scores = np.array([[3.0, 1.0, 2.0], [0.5, 4.0, 4.0], [2.0, 2.0, 0.9], [9.0, 8.0, 7.0]])
    best, ranked = select(scores, 3)
    assert best.tolist() == [1, 0, 2, 2]
    assert ranked.tolist() == [1, 2, 0]


def _brute_force(samples, params, model):
    """Score every candidate one at a time with an independent padding implementation."""
    label = samples[0].label
    pool = sorted(samples, key=lambda s: s.key)
    rng = class_rng(params.seed, label)
    chosen = [pool[i] for i in choose_images([s.key for s in pool], params.mipc, rng)]
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    per_image = []
    for s in chosen:
        crops, boxes = candidate_crops(s.pixels, params.num_crop, params.patch, rng)
        losses = []
        for crop in crops:
            canvas = np.zeros((params.size, params.size, 3), dtype=np.float32)
            off = (params.size - params.patch) // 2
            canvas[off:off + params.patch, off:off + params.patch] = (crop - mean) / std
            x = torch.from_numpy(canvas).permute(2, 0, 1)[None]
            with torch.no_grad():
                logp = torch.log_softmax(model(x).double(), dim=1)
            losses.append(-float(logp[0, label]))
        i = int(np.argmin(losses))
        per_image.append((losses[i], s.key, list(boxes[i])))
    per_image.sort(key=lambda t: t[0])
    return per_image


def test_chosen_patches_are_lowest_loss():
    params = RdedParams(ipc=2, size=32, factor=2, mipc=9, num_crop=3, seed=5)
    samples = _class_samples(1, 12)
    model = _tiny_observer()
    out = distill_class(samples, params, model)
    truth = _brute_force(samples, params, model)
    need = params.patches_per_class
    assert [d.key for d in out] == ["rded-0001-0000", "rded-0001-0001"]
    assert all(d.label == 1 and d.pixels.shape == (32, 32, 3) for d in out)
    # patch k of image j is ranked patch k * ipc + j
    got = {}
    for j, d in enumerate(out):
        for k, cell in enumerate(d.meta["patches"]):
            got[k * params.ipc + j] = (cell["key"], cell["box"], cell["loss"])
    assert [got[r][:2] for r in range(need)] == [(k, b) for _, k, b in truth[:need]]
    assert [got[r][2] for r in range(need)] == pytest.approx([t[0] for t in truth[:need]],
                                                             abs=1e-4)
    # every image not chosen had a higher best-candidate loss than every chosen one
    assert max(t[0] for t in truth[:need]) <= min(t[0] for t in truth[need:])


class _Brightness(nn.Module):
    """Class-0 logit = mean brightness: the most realistic patch is the brightest."""

    def forward(self, x):
        return torch.stack([x.mean(dim=(1, 2, 3)) * 10, torch.zeros(x.shape[0])], dim=1)


def test_brightest_patches_win_with_brightness_observer():
    dark = [Decoded(f"d{i}", 0, np.full((32, 32, 3), 20, np.uint8)) for i in range(6)]
    bright = [Decoded(f"b{i}", 0, np.full((32, 32, 3), 200 + i, np.uint8)) for i in range(4)]
    out = distill_class(dark + bright, RdedParams(ipc=1, size=16, factor=2, mipc=10,
                                                  num_crop=2), _Brightness())
    assert len(out) == 1
    assert [c["key"] for c in out[0].meta["patches"]] == ["b3", "b2", "b1", "b0"]
    assert out[0].pixels[:8, :8].min() >= 202   # patch rank 0 top-left: b3 (value 203)


def test_selection_deterministic_for_a_seed():
    samples = _class_samples(2, 10)
    model = _tiny_observer()
    params = RdedParams(ipc=2, size=32, factor=1, mipc=6, num_crop=4, seed=1)
    a = distill_class(samples, params, model)
    b = distill_class(list(reversed(samples)), params, model)   # input order is irrelevant
    assert [d.meta for d in a] == [d.meta for d in b]
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(a, b, strict=True))
    c = distill_class(samples, RdedParams(ipc=2, size=32, factor=1, mipc=6, num_crop=4,
                                          seed=2), model)
    assert [d.meta for d in a] != [d.meta for d in c]


def test_random_baseline_deterministic():
    samples = _class_samples(0, 10)
    params = RdedParams(ipc=3, method="random", size=24, seed=4)
    a, b = random_class(samples, params), random_class(samples[::-1], params)
    assert [d.meta["source"] for d in a] == [d.meta["source"] for d in b]
    assert len({d.meta["source"] for d in a}) == 3
    assert all(d.pixels.shape == (24, 24, 3) for d in a)
    assert [d.key for d in a] == ["random-0000-0000", "random-0000-0001", "random-0000-0002"]


def test_params_defaults_and_errors():
    assert RdedParams(ipc=10).factor == 2 and RdedParams(ipc=10, size=32).factor == 1
    with pytest.raises(ValueError, match="not a multiple of factor"):
        RdedParams(ipc=1, size=33, factor=2)
    with pytest.raises(ValueError, match="mipc 10 < ipc"):
        RdedParams(ipc=10, size=32, factor=2, mipc=10)
    with pytest.raises(ValueError, match="lower ipc or factor"):
        distill_class(_class_samples(0, 3), RdedParams(ipc=1, size=32, factor=2),
                      _tiny_observer())


# -- observer ---------------------------------------------------------------------------


def test_observer_checkpoint_classes_and_identity(tmp_path):
    model = _tiny_observer()
    path = _save_checkpoint(tmp_path / "checkpoint_epoch0001", model, CLASSES)
    obs = load_observer(ObserverRef(str(tmp_path)), CLASSES)   # a run directory
    assert obs.classes == CLASSES
    ident = observer_identity(ObserverRef(str(tmp_path)))
    assert ident["observer_file"].endswith("checkpoint_epoch0001/state.pt")
    import hashlib

    assert ident["observer_sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_class_order_mismatch_is_an_error():
    check_class_order(CLASSES, CLASSES, "obs", "data")
    with pytest.raises(ValueError, match="another order.*index 0.*'square'.*'circle'") as exc:
        check_class_order(("square", "circle", "triangle"), CLASSES, "obs", "data")
    assert "Observer order" in str(exc.value) and "dataset order" in str(exc.value)
    with pytest.raises(ValueError, match="different classes"):
        check_class_order(("a", "b"), CLASSES, "obs", "data")


def test_weights_observer_needs_class_order(tmp_path):
    model = build_model("small_cnn", 3)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    with pytest.raises(ValueError, match="observer_classes"):
        load_observer(ObserverRef("small_cnn", str(weights)), CLASSES)
    obs = load_observer(ObserverRef("small_cnn", str(weights), "sorted"), CLASSES[::-1])
    assert obs.classes == CLASSES
    names = tmp_path / "classes.txt"
    names.write_text("b\na\nc\n")
    assert load_observer(ObserverRef("small_cnn", str(weights), str(names)), ()).classes == (
        "b", "a", "c")


def test_make_variant_pins_observer(tmp_path):
    _save_checkpoint(tmp_path / "checkpoint_epoch0001", _tiny_observer(), CLASSES)
    spec = make_variant({"ipc": 1, "size": 32, "observer": str(tmp_path)}, {})
    assert spec.group_by_class and spec.use_actors and spec.splits == ("train",)
    assert spec.params["factor"] == 1 and spec.params["mipc"] == 300
    assert len(spec.params["observer_sha256"]) == 64
    transform = spec.make_transform()
    out = transform(_class_samples(0, 4), "train")
    assert [d.key for d in out] == ["rded-0000-0000"]
    # a new checkpoint in the run directory does not change what the spec loads
    _save_checkpoint(tmp_path / "checkpoint_epoch0002", _tiny_observer(seed=1), CLASSES)
    assert spec.make_transform()(_class_samples(0, 4), "train")[0].meta == out[0].meta
    random_spec = make_variant({"ipc": 1, "size": 32, "method": "random"}, {})
    assert not random_spec.use_actors and "observer" not in random_spec.params


# -- end to end: the Ray job over an ingested dataset -------------------------------------


def _parent_classes(out: str) -> list[str]:
    import json
    import os

    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)["classes"]


def _tar_images(out: str, split: str) -> dict[str, bytes]:
    import glob
    import os
    import tarfile

    images = {}
    for path in sorted(glob.glob(os.path.join(out, "wds", f"*-{split}-*.tar"))):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.name.endswith((".jpg", ".png")):
                    images[m.name.split(".", 1)[0]] = tar.extractfile(m).read()
    return images


@pytest.mark.slow
def test_distill_job_end_to_end(demo_dataset, ray_local, tmp_path):
    import io
    import os

    from helpers import ffcv_labels, file_bytes, wds_samples

    from shardforge.catalog.variant import run_variant
    from shardforge.variants.rded.spec import rded_variant

    classes = _parent_classes(demo_dataset)
    run_dir = tmp_path / "observer"
    _save_checkpoint(run_dir / "checkpoint_epoch0003", _tiny_observer(len(classes)), classes)
    params = {"ipc": 1, "size": 32, "factor": 2, "mipc": 6, "num_crop": 2, "seed": 0,
              "observer": str(run_dir)}
    out = str(tmp_path / "rded")
    summary = run_variant(demo_dataset, rded_variant(params, num_actors=1), "demo-rded", out, register=False, log=io.StringIO())
    train = wds_samples(out, "demo-rded", "train")
    assert sorted(k for k, _, _ in train) == [f"rded-{c:04d}-0000" for c in range(10)]
    assert summary["splits"]["train"]["samples"] == 10
    assert all(len(meta["patches"]) == 4 for _, _, meta in train)
    beton = os.path.join(out, "beton", "demo-rded-train.beton")
    assert sorted(ffcv_labels(beton)) == list(range(10))
    assert _tar_images(out, "val") == _tar_images(demo_dataset, "val")   # val copied
    vparams = summary["variant"]["params"]
    assert vparams["observer_file"].endswith("checkpoint_epoch0003/state.pt")
    assert len(vparams["observer_sha256"]) == 64
    # the same seed again (a fresh output, other worker count) gives the same bytes
    out2 = str(tmp_path / "rded2")
    run_variant(demo_dataset, rded_variant(params, num_actors=2), "demo-rded", out2, register=False, log=io.StringIO())
    assert file_bytes(out2) == file_bytes(out)
    # a lost class shard and summary: the rerun rebuilds them to the same bytes
    os.remove(os.path.join(out, "summary.json"))
    os.remove(os.path.join(out, "wds", "demo-rded-train-000003.tar"))
    run_variant(demo_dataset, rded_variant(params, num_actors=1), "demo-rded", out, register=False, log=io.StringIO())
    assert file_bytes(out) == file_bytes(out2)


def test_distill_refuses_mismatched_class_order(demo_dataset, tmp_path, capsys):
    import importlib.util

    classes = _parent_classes(demo_dataset)
    _save_checkpoint(tmp_path / "obs" / "checkpoint_epoch0001", _tiny_observer(len(classes)),
                     classes[::-1])
    spec = importlib.util.spec_from_file_location("distill_job", "pipelines/distill.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    out = tmp_path / "out"
    code = job.main(["--source", demo_dataset, "--observer", str(tmp_path / "obs"), "--ipc",
                     "1", "--size", "32", "--out", str(out), "--no-register"])
    err = capsys.readouterr().err
    assert code == 2 and "class order mismatch" in err
    assert f"observer order: [{classes[-1]}" in err.lower()
    assert f"dataset order: [{classes[0]}" in err.lower()
    assert not out.exists()       # stopped before any work (and before starting Ray)


# -- the catalog pipeline ---------------------------------------------------------------

CARD = """\
name: card
description: A distilled test card.
source: {dataset: demo}
pipeline:
  name: distill
  params: PARAMS
licence: CC0
"""


def test_distill_cards_validate(tmp_path):
    from shardforge.catalog.cards import load_card
    from shardforge.catalog.errors import CardError

    for repo_card in ("demo-rded-ipc10", "imagenet-rded-ipc10"):
        card = load_card(f"datasets/{repo_card}.yaml")
        assert card.pipeline == "distill" and card.params["ipc"] == 10
    path = tmp_path / "card.yaml"
    path.write_text(CARD.replace("PARAMS", "{ipc: 10, size: 32}"))
    with pytest.raises(CardError, match="needs an observer"):
        load_card(path)
    path.write_text(CARD.replace("PARAMS", "{ipc: 10, size: 32, method: random}"))
    assert load_card(path).params["method"] == "random"
    path.write_text(CARD.replace("PARAMS", "{ipc: 10, size: 30, factor: 4, observer: x}"))
    with pytest.raises(CardError, match="not a multiple of factor"):
        load_card(path)


@pytest.mark.slow
def test_distill_pipeline_build_checks_parent_classes(demo_dataset, ray_local, tmp_path):
    from helpers import wds_samples

    from shardforge.build.pipeline import BuildRequest, ParentDataset
    from shardforge.variants.rded.spec import PIPELINE

    classes = _parent_classes(demo_dataset)
    _save_checkpoint(tmp_path / "obs" / "checkpoint_epoch0001", _tiny_observer(len(classes)),
                     classes)
    params = PIPELINE.with_defaults({"method": "rded", "ipc": 1, "size": 32, "mipc": 6,
                                     "num_crop": 1, "observer": str(tmp_path / "obs")})
    parent = ParentDataset(demo_dataset, "demo@v1", tuple(classes))
    summary = PIPELINE.build(BuildRequest("card-rded", params, str(tmp_path / "out"),
                                          parent=parent))
    assert len(wds_samples(str(tmp_path / "out"), "card-rded", "train")) == 10
    assert summary["variant"]["params"]["observer_sha256"]
    wrong = ParentDataset(demo_dataset, "demo@v1", tuple(classes[::-1]))
    with pytest.raises(ValueError, match="class order mismatch"):
        PIPELINE.build(BuildRequest("card-rded", params, str(tmp_path / "out2"), parent=wrong))


@pytest.mark.slow
def test_distill_as_ray_job_submit(demo_dataset, tmp_path):
    """`ray job submit -- python pipelines/distill.py ...` against a real head on 127.0.0.1."""
    import subprocess

    from helpers import BIN, REPO, local_ray_head, wds_samples

    classes = _parent_classes(demo_dataset)
    _save_checkpoint(tmp_path / "obs" / "checkpoint_epoch0001", _tiny_observer(len(classes)),
                     classes)
    with local_ray_head() as (address, env):
        out = str(tmp_path / "out")
        job = subprocess.run(
            [f"{BIN}/ray", "job", "submit", "--address", address, "--working-dir", REPO,
             "--", "python", "pipelines/distill.py", "--source", demo_dataset, "--observer",
             str(tmp_path / "obs"), "--ipc", "1", "--size", "32", "--mipc", "6",
             "--num-crop", "2", "--name", "demo-rded", "--out", out, "--no-register"],
            env=env, capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "10 distilled train images" in job.stdout + job.stderr
        assert sorted(k for k, _, _ in wds_samples(out, "demo-rded", "train")) == [
            f"rded-{c:04d}-0000" for c in range(10)]

