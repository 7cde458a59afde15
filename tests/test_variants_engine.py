"""The variant engine: a parent dataset through a transform into both formats, with lineage."""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pytest
import ray
from helpers import (
    ffcv_labels,
    file_bytes,
    image_pixels,
    index_rows,
    tar_images,
    wds_samples,
)

from shardforge.build.transform import Decoded, VariantSpec
from shardforge.catalog.variant import run_variant

# Ray workers cannot import this test module: ship its transforms by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Invert:
    """255 - x, marking each sample."""

    def __call__(self, samples: list[Decoded], split: str) -> list[Decoded]:
        return [Decoded(s.key, s.label, 255 - s.pixels, {"inverted": True}) for s in samples]


class FirstTwo:
    """Group-by-class: the class's first two images (by key), re-keyed."""

    def __call__(self, samples: list[Decoded], split: str) -> list[Decoded]:
        assert len({s.label for s in samples}) == 1
        chosen = sorted(samples, key=lambda s: s.key)[:2]
        return [Decoded(f"pick-{s.label:03d}-{j}", s.label, s.pixels, {"from": s.key})
                for j, s in enumerate(chosen)]


def _invert_spec(**kw) -> VariantSpec:
    return VariantSpec("invert", {"v": 1}, Invert, **kw)


def test_map_variant_transforms_train_copies_val(demo_dataset, ray_local, tmp_path):
    import json

    from shardforge.catalog import register_build

    with open(os.path.join(demo_dataset, "summary.json")) as f:   # a parent only this test uses
        parent_ref = register_build(None, "engine-parent", json.load(f)).ref
    out = str(tmp_path / "inv")
    summary = run_variant("engine-parent", _invert_spec(), "demo-inv", out, log=io.StringIO())
    parent = {r["key"]: r for r in index_rows(demo_dataset)}
    rows = index_rows(out)
    assert sorted(r["key"] for r in rows) == sorted(parent)           # every key kept
    assert all(r["label"] == parent[r["key"]]["label"] for r in rows)
    parent_img, child_img = tar_images(demo_dataset), tar_images(out)
    for r in rows:
        if r["split"] == "val":      # copied byte for byte
            assert child_img[r["key"]] == parent_img[r["key"]]
        else:                        # lossless PNG of the inverted parent pixels
            assert r["format"] == "png"
            assert np.array_equal(image_pixels(child_img[r["key"]]),
                                  255 - image_pixels(parent_img[r["key"]]))
    train = wds_samples(out, "demo-inv", "train")
    assert len(train) == summary["splits"]["train"]["samples"] == 60
    assert all(meta["inverted"] for _, _, meta in train)
    beton = os.path.join(out, "beton", "demo-inv-train.beton")
    assert sorted(ffcv_labels(beton)) == sorted(label for _, label, _ in train)
    assert summary["parent"] == parent_ref
    assert summary["variant"]["name"] == "invert"
    from shardforge import catalog

    build = catalog.get("demo-inv")
    assert build.parent == summary["parent"] and build.pipeline == "invert"
    # rerun: every shard verified and reused, same bytes
    before = file_bytes(out)
    again = run_variant("engine-parent", _invert_spec(), "demo-inv", out, log=io.StringIO())
    assert file_bytes(out) == before and again["catalog"] == summary["catalog"]


def test_actor_pool_gives_the_same_bytes_as_tasks(demo_dataset, ray_local, tmp_path):
    a, b = str(tmp_path / "tasks"), str(tmp_path / "actors")
    run_variant(demo_dataset, _invert_spec(), "x", a, register=False, log=io.StringIO())
    run_variant(demo_dataset, _invert_spec(use_actors=True, num_actors=2), "x", b,
                register=False, log=io.StringIO())
    assert file_bytes(a) == file_bytes(b)


def test_group_by_class_variant(demo_dataset, ray_local, tmp_path):
    out = str(tmp_path / "pick")
    spec = VariantSpec("pick", {}, FirstTwo, group_by_class=True)
    summary = run_variant(demo_dataset, spec, "pick", out, register=False, log=io.StringIO())
    train = wds_samples(out, "pick", "train")
    assert len(train) == 2 * 10 == summary["splits"]["train"]["samples"]
    assert sorted(k for k, _, _ in train) == sorted(f"pick-{c:03d}-{j}" for c in range(10)
                                                    for j in range(2))
    assert summary["splits"]["val"]["samples"] == 20                 # copied whole


def test_bad_transform_output_is_named(demo_dataset, ray_local, tmp_path):
    class Floats:
        def __call__(self, samples, split):
            return [Decoded(s.key, s.label, s.pixels / 255.0) for s in samples]

    with pytest.raises(Exception, match="uint8 H x W x 3"):
        run_variant(demo_dataset, VariantSpec("floats", {}, Floats), "f", str(tmp_path / "f"),
                    register=False, log=io.StringIO())


def test_a_temporary_left_by_a_killed_writer_is_gone_after_the_job(demo_dataset, ray_local,
                                                                   tmp_path):
    """A worker killed mid-write (a node lost during the job) leaves a ``.NAME.tmp-...``
    file; once every shard is in, the job deletes it, as a rerun would."""
    out = tmp_path / "t"

    class LeavesATemporary:
        def __call__(self, samples, split):
            stray = out / "wds" / f".t-{split}-000000.tar.tmp-0123456789ab"
            stray.parent.mkdir(parents=True, exist_ok=True)
            stray.write_bytes(b"half a tar")
            return samples

    summary = run_variant(demo_dataset, VariantSpec("leftover", {}, LeavesATemporary), "t",
                          str(out), register=False, log=io.StringIO())
    assert summary["samples"] == 80 and summary["rejects"]["count"] == 0
    assert [p.name for p in out.rglob("*.tmp-*")] == []
