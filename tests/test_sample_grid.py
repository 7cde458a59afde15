"""`shardforge catalog sample`: N samples per class from the shards by byte range, as an
image whose cells are the samples' own pixels, or an HTML page naming them."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from shardforge.cli import main
from shardforge.layout.dataset import open_dataset
from shardforge.layout.sample_grid import THUMB, pick_samples


def test_grid_image_cells_are_the_samples(demo_dataset, tmp_path, capsys):
    ds = open_dataset(demo_dataset)
    out = str(tmp_path / "grid.png")
    assert main(["catalog", "sample", demo_dataset, "--out", out, "--per-class", "3",
                 "--classes", f"{ds.classes[2]},{ds.classes[0]}", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["samples"]
    assert [s["class"] for s in shown] == [ds.classes[2]] * 3 + [ds.classes[0]] * 3
    index = ds.split("train")
    for s in shown:                      # each sample is of its class, at its position
        assert index.key[s["position"]] == s["key"] and index.label[s["position"]] == s["label"]
    grid = np.asarray(Image.open(out).convert("RGB"))
    cell = THUMB + 4
    assert grid.shape == (2 * cell, 3 * cell, 3)
    rows = pick_samples(ds, "train", 3, [ds.classes[2], ds.classes[0]], 0)
    first = np.asarray(rows[0][0].thumb)
    h, w = first.shape[:2]
    y, x = 2 + (THUMB - h) // 2, 2 + (THUMB - w) // 2
    assert np.array_equal(grid[y:y + h, x:x + w], first)       # PNG: the exact pixels
    # another seed picks other samples; the same seed the same ones
    again = pick_samples(ds, "train", 3, [ds.classes[2]], 0)[0]
    other = pick_samples(ds, "train", 3, [ds.classes[2]], 1)[0]
    assert [p.key for p in again] == [s["key"] for s in shown[:3]]
    assert [p.key for p in other] != [p.key for p in again]


def test_grid_html_and_errors(demo_dataset, tmp_path, capsys):
    out = str(tmp_path / "grid.html")
    assert main(["catalog", "sample", demo_dataset, "--out", out, "--per-class", "2",
                 "--split", "val"]) == 0
    page = open(out, encoding="utf-8").read()
    assert page.count("data:image/jpeg;base64,") == 2 * len(open_dataset(demo_dataset).classes)
    assert main(["catalog", "sample", demo_dataset, "--out", str(tmp_path / "g.gif")]) == 2
    assert main(["catalog", "sample", demo_dataset, "--out", str(tmp_path / "g.png"),
                 "--classes", "no-such-class"]) == 2
    err = capsys.readouterr().err
    assert ".jpg, .png or .html" in err and "no classes ['no-such-class']" in err


def test_catalog_show_summarises_many_classes():
    from shardforge.cli.catalog_format import per_class as _per_class

    assert _per_class({"0": 5, "1": 7}, ["cat", "dog"]) == "cat=5, dog=7"
    counts = {str(k): 1300 for k in range(1000)}
    counts["3"], counts["999"] = 732, 1301
    names = [f"n{k:08d}" for k in range(1000)]
    assert _per_class(counts, names) == ("1000 classes, min 732 (n00000003), median 1,300, "
                                         "max 1,301 (n00000999)")


def test_grid_of_natural_photos_skips_a_damaged_sample(tmp_path, ray_local, capsys):
    """A class-folder tree of natural photos (scikit-image samples), ingested; one stored
    JPEG then damaged in its tar: the grid shows the rest and names the skipped key."""
    from test_reliability_samples import encode, photo

    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.formats.image import ImageParams

    src = tmp_path / "src" / "train"
    for cls, which in (("astronaut", "astronaut"), ("cat", "chelsea"), ("coffee", "coffee")):
        (src / cls).mkdir(parents=True)
        for n, (h, w) in enumerate([(300, 400), (480, 360), (250, 250)]):
            (src / cls / f"{cls}{n}.jpg").write_bytes(encode(photo(h, w, which), "JPEG",
                                                             quality=90))
    out = str(tmp_path / "photos")
    run_ingest(IngestConfig(source=str(tmp_path / "src"), name="photos", out=out,
                            image=ImageParams(max_resolution=128)))
    ds = open_dataset(out)
    index = ds.split("train")
    p = int(np.flatnonzero(index.label == ds.classes.index("cat"))[0])
    with open(index.shard_urls[index.shard[p]], "r+b") as f:     # damage one JPEG in place
        f.seek(int(index.offset[p]))
        f.write(b"\0" * int(index.size[p]))
    grid = str(tmp_path / "grid.jpg")
    assert main(["catalog", "sample", out, "--out", grid, "--per-class", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["samples"]) == 8 and len(result["skipped"]) == 1
    assert result["skipped"][0].startswith(str(index.key[p]))
    assert Image.open(grid).size == (3 * (THUMB + 4), 3 * (THUMB + 4))
