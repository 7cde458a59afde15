"""Adding a fifth variant = adding one package: the example ``invert`` package
(tests/example_variant/invert: spec.py + transform.py) built from a dataset card through
the catalog (``shardforge build``), touching no other layer; docs/architecture.md ("Adding a variant")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import ray
from helpers import image_pixels, index_rows, tar_images, wds_samples

import shardforge.variants
from shardforge.build import pipeline as registry
from shardforge.catalog import pipelines
from shardforge.catalog.register import register_build
from shardforge.cli import main

EXAMPLE_DIR = os.path.join(os.path.dirname(__file__), "example_variant")
PACKAGE = "shardforge.variants.invert"


@pytest.fixture
def invert_plugin(monkeypatch):
    """The example package as if it sat in src/shardforge/variants/invert/: its folder is
    added to ``shardforge.variants.__path__`` (what :func:`shardforge.variants.load_plugins`
    scans). Ray workers cannot see that folder, so its transform module is shipped to them
    by value (an installed package would be imported there). Undone afterwards: the
    registry, the modules and the path are restored."""
    pipelines.load_pipelines()                      # the built-ins stay registered
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(shardforge.variants, "__path__",
                        [*shardforge.variants.__path__, EXAMPLE_DIR])
    assert f"{PACKAGE}.spec" in shardforge.variants.load_plugins()
    transform = sys.modules[f"{PACKAGE}.transform"]
    ray.cloudpickle.register_pickle_by_value(transform)
    try:
        yield
    finally:
        ray.cloudpickle.unregister_pickle_by_value(transform)
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_example_spec_imports_no_torch_or_ray():
    """Like every spec, the example's imports no torch and no Ray (a fresh interpreter:
    this one has them loaded); see tests/test_catalog_imports.py."""
    script = ("import sys, shardforge.variants as v; v.__path__.append(sys.argv[1]); "
              "import shardforge.variants.invert.spec; "
              "print([m for m in ('torch', 'torchvision', 'timm', 'ray') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", script, EXAMPLE_DIR], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_example_variant_registers_and_validates(invert_plugin):
    assert "invert" in pipelines.pipeline_names()
    pipeline = pipelines.get_pipeline("invert")
    assert pipeline.with_defaults({}) == {"channels": [0, 1, 2], "splits": ["train"]}
    with pytest.raises(ValueError, match="channels must be a non-empty subset"):
        pipeline.check({"channels": [3], "splits": ["train"]})


def test_example_variant_builds_from_a_card(invert_plugin, demo_dataset, ray_local, tmp_path,
                                            capsys):
    home, cards = str(tmp_path / "home"), tmp_path / "cards"
    with open(os.path.join(demo_dataset, "summary.json")) as f:
        register_build(home, "example-parent", json.load(f))
    cards.mkdir()
    (cards / "demo-inverted.yaml").write_text(textwrap.dedent("""
        name: demo-inverted
        description: the demo with every train image's colours inverted.
        source: {dataset: example-parent}
        pipeline: {name: invert, params: {channels: [0, 1, 2]}}
        licence: CC0-1.0
        """))
    assert main(["build", "demo-inverted", "--cards", str(cards), "--home", home,
                 "--json"]) == 0
    build = json.loads(capsys.readouterr().out)
    assert (build["pipeline"], build["parent"]) == ("invert", "example-parent@v1")
    assert build["params"] == {"channels": [0, 1, 2], "splits": ["train"]}

    out = build["out"]
    parent_rows = {r["key"]: r for r in index_rows(demo_dataset)}
    rows = index_rows(out)
    assert sorted(r["key"] for r in rows) == sorted(parent_rows)
    parent_img, child_img = tar_images(demo_dataset), tar_images(out)
    for r in rows:
        assert r["label"] == parent_rows[r["key"]]["label"]
        if r["split"] == "val":     # copied byte for byte
            assert child_img[r["key"]] == parent_img[r["key"]]
        else:                       # exactly the inverted parent pixels, stored losslessly
            assert np.array_equal(image_pixels(child_img[r["key"]]),
                                  255 - image_pixels(parent_img[r["key"]]))
    train = wds_samples(out, "demo-inverted", "train")
    assert len(train) == 60 and all(meta["inverted"] == [0, 1, 2] for _, _, meta in train)
