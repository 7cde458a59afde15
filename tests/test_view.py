"""`shardforge view` over HTTP (Starlette's TestClient): every page type on a small catalog
with variants, images that are the samples' own bytes and pixels, 404 pages naming close
matches, and a missing shard shown as a placeholder with its reason (never a 500)."""

from __future__ import annotations

import io
import os
import re

import cv2
import numpy as np
import pytest
from helpers import tar_images
from PIL import Image
from view_catalog import NUM_AUGS, REJECTS, TOP_K, build_view_catalog

from shardforge.layout.dataset import open_dataset

pytest.importorskip("starlette")
pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from shardforge.view.app import create_app  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def cat(tmp_path_factory) -> dict:
    return build_view_catalog(str(tmp_path_factory.mktemp("view")))


@pytest.fixture(scope="module")
def client(cat):
    return TestClient(create_app(cat["home"]), raise_server_exceptions=True)


def _imgs(page: str) -> list[str]:
    return re.findall(r'<img[^>]* src="([^"]+)"', page)


def _one_key(cat, name="toy", split="train", label=None) -> tuple[str, int]:
    index = open_dataset(cat["builds"][name].out).split(split)
    p = 0 if label is None else int(np.flatnonzero(index.label == label)[0])
    return str(index.key[p]), int(index.label[p])


def test_catalog_page_lists_every_build_and_its_lineage(cat, client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    for ref in ("toy@v1", "toy-cuda@v1", "toy-stylized@v1", "toy-plus@v1", "toy-broken@v1"):
        assert f'href="/d/{ref}"' in r.text
    graph = r.text[r.text.index('<svg class="lineage"'):r.text.index("</svg>")]
    assert graph.count("<path ") == 3            # toy -> cuda, stylized, plus
    assert graph.count("<rect ") == 5 and "reinforce" in graph
    assert "beton, wds" in r.text and "train 30, val 10" in r.text and "MiB" in r.text


def test_dataset_page_charts_and_rejects(cat, client):
    r = client.get("/d/toy")
    assert r.status_code == 200
    chart = r.text[r.text.index('<svg class="chart"'):]
    chart = chart[:chart.index("</svg>")]
    assert chart.count('class="bar"') == 10                 # one bar per class
    assert re.search(r"<title>circle: 3</title>", chart)
    assert "width px" in r.text and "height px" in r.text and "bytes per sample" in r.text
    assert "No input was rejected" in r.text
    assert 'href="/d/toy-cuda@v1"' in r.text                 # the lineage family
    val = client.get("/d/toy@v1?split=val")
    assert val.status_code == 200 and "circle: 1</title>" in val.text
    broken = client.get("/d/toy-broken").text
    assert "2 rejected input(s)" in broken
    for rej in REJECTS:
        assert rej["origin"] in broken and rej["reason"] in broken
    plus = client.get("/d/toy-plus").text
    assert f"stores {NUM_AUGS} augmentations" in plus and "top-5" in plus


def test_class_grid_is_seeded_paged_and_titled(cat, client):
    ds = open_dataset(cat["builds"]["toy"].out)
    index = ds.split("train")
    label_of = dict(zip(index.key.tolist(), index.label.tolist(), strict=True))

    def cells(url):
        r = client.get(url)
        assert r.status_code == 200
        return re.findall(r'title="([^"/]+) / ([^"]+)"', r.text)

    shown = cells("/d/toy/grid?n=2")
    assert len(shown) == 20 and {c for c, _ in shown} == set(ds.classes)
    for name, key in shown:                    # hover text: the sample's class and key
        assert ds.classes[label_of[key]] == name
    assert cells("/d/toy/grid?n=2") == shown
    assert cells("/d/toy/grid?n=2&seed=1") != shown
    # one class, paged one sample at a time: its three samples, none repeated
    pages = [cells(f"/d/toy/grid?cls=circle&n=1&page={p}") for p in range(3)]
    keys = [k for page in pages for _, k in page]
    assert sorted(keys) == sorted(k for k, lab in label_of.items() if ds.classes[lab] == "circle")
    r = client.get("/d/toy/grid?cls=circle&n=1&page=3")
    assert r.status_code == 404 and "pages are 0 to 2" in r.text


def test_images_are_the_stored_bytes_and_thumbnails_are_cached(cat, client):
    from shardforge.view.images import thumbnail_image

    key, _ = _one_key(cat)
    stored = tar_images(cat["builds"]["toy"].out)[key]
    r = client.get(f"/img/toy/train/{key}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert r.content == stored
    hits = thumbnail_image.cache_info().hits
    thumb = client.get(f"/img/toy@v1/train/{key}?size=32")
    assert client.get(f"/img/toy@v1/train/{key}?size=32").content == thumb.content
    assert thumbnail_image.cache_info().hits == hits + 1
    img = Image.open(io.BytesIO(thumb.content))
    full = Image.open(io.BytesIO(stored))
    assert max(img.size) == 32 and abs(img.size[0] / img.size[1] - full.size[0] / full.size[1]) < 0.1


def cat_meta_style_key(client, key: str) -> str:
    """The style_key the stylized build recorded for ``key`` (from its sample page)."""
    import re

    page = client.get(f"/d/toy-stylized/sample/train/{key}").text
    return re.search(r"style_key</th><td class=\"mono\">([^<]+)<", page).group(1)


def test_sample_page_shows_metadata_and_the_key_in_related_builds(cat, client):
    key, label = _one_key(cat)
    r = client.get(f"/d/toy/sample/train/{key}")
    assert r.status_code == 200
    assert "orig_width" in r.text and "origin" in r.text      # the sample's .json member
    for ref in ("toy-cuda@v1", "toy-stylized@v1", "toy-plus@v1"):
        assert f"/img/{ref}/train/{key}?size=" in r.text
    assert f"/diff/toy@v1/train/{key}?against=toy-cuda@v1" in r.text
    assert "poisoned: <span class=\"mono\">True" in r.text
    assert "sizes differ" in r.text and "style_key" in r.text   # stylized: cropped to 56
    style_key = cat_meta_style_key(client, key)
    assert f"/style/toy-stylized@v1?key={style_key}" in r.text
    style = client.get(f"/style/toy-stylized@v1?key={style_key}")
    assert style.status_code == 200 and style.headers["content-type"] == "image/png"
    from shardforge.variants.stylize.styles import BUILTIN_DEMO, style_image

    want = cv2.resize(style_image(BUILTIN_DEMO, style_key), (128, 128),
                      interpolation=cv2.INTER_AREA)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(style.content))), want)
    own = client.get(f"/d/toy-stylized/sample/train/{key}").text
    assert 'id="style"' in own
    missing = client.get("/style/toy-stylized@v1?key=no-such-style")
    assert missing.status_code == 404
    assert "hold no style" in missing.headers["X-Shardforge-Error"]
    assert client.get(f"/style/toy-cuda@v1?key={style_key}").status_code == 404
    diff = client.get(f"/diff/toy/train/{key}?against=toy-cuda")
    assert diff.status_code == 200 and diff.headers["content-type"] == "image/png"
    heat = np.asarray(Image.open(io.BytesIO(diff.content)).convert("RGB"))
    assert heat.shape[:2] == Image.open(io.BytesIO(client.get(f"/img/toy/train/{key}").content)
                                        ).size[::-1] and heat.max() > 0
    for src in _imgs(r.text):
        got = client.get(src)
        assert got.status_code == 200 and "X-Shardforge-Error" not in got.headers, src


def test_reinforced_sample_replays_the_stored_augmentations(cat, client):
    import pyarrow.parquet as pq

    from shardforge.augment import AugPolicy, apply_params, params_from_columns
    from shardforge.formats.decode import decode_full

    plus = cat["builds"]["toy-plus"]
    key, _ = _one_key(cat)
    r = client.get(f"/d/toy-plus/sample/train/{key}")
    assert r.status_code == 200 and f"Stored augmentations ({NUM_AUGS})" in r.text
    assert "toy (this build stores augmentations, not images)" in r.text
    augs = [s for s in _imgs(r.text) if s.startswith("/aug/")]
    assert augs == [f"/aug/toy-plus@v1/{key}/{a}" for a in range(NUM_AUGS)]
    rows = r.text[r.text.index('id="augs"'):]
    assert len(re.findall(r'<td class="num">0\.\d{3}</td>', rows)) == NUM_AUGS * TOP_K
    # the replayed view is apply_params of the stored record on the parent's image
    tables = [pq.read_table(os.path.join(plus.out, "reinforce", f),
                            filters=[("key", "==", key)])
              for f in sorted(os.listdir(os.path.join(plus.out, "reinforce")))]
    table = next(t for t in tables if t.num_rows).sort_by("aug")
    policy = AugPolicy(size=32)
    records = params_from_columns({c: table[c].to_numpy() for c in table.column_names
                                   if c.startswith("aug_")}, policy)
    image = decode_full(tar_images(cat["builds"]["toy"].out)[key])
    got = np.asarray(Image.open(io.BytesIO(client.get(augs[2]).content)))
    assert np.array_equal(got, apply_params(image, records[2], policy).permute(1, 2, 0).numpy())
    assert client.get(f"/aug/toy-plus/{key}/{NUM_AUGS}").headers.get("X-Shardforge-Error")


def test_unknown_names_give_a_404_naming_close_matches(cat, client):
    key, _ = _one_key(cat)

    def not_found(url: str, *expected: str) -> str:
        r = client.get(url)
        assert r.status_code == 404, url
        assert "Traceback" not in r.text
        for text in expected:
            assert text in r.text, (url, text)
        return r.text

    not_found("/d/toyy", "unknown dataset &#39;toyy&#39;", 'href="/d/toy"')
    not_found("/d/toy@v7", "no version v7", 'href="/d/toy@v1"')
    not_found("/d/toy/sample/train/" + key[:-1] + "x", f'/d/toy@v1/sample/train/{key}"')
    not_found(f"/d/toy/sample/trian/{key}", "no split &#39;trian&#39;", "grid?split=train")
    not_found("/d/toy/grid?cls=circel", "no class", "cls=circle")
    not_found("/d/toy/grid?page=x", "page=&#39;x&#39; is not a whole number")
    not_found("/toy-cuda", 'href="/d/toy-cuda"')
    not_found("/d/toy/nothing-here", "no page")
    r = client.get("/img/nope/train/k?size=64")
    assert r.status_code == 404 and r.headers["content-type"] == "image/png"
    assert "unknown dataset" in r.headers["X-Shardforge-Error"]


def test_a_missing_shard_is_a_placeholder_with_its_reason(cat, client):
    missing = cat["missing_tar"]
    index = open_dataset(cat["builds"]["toy"].out).split("train")
    key = str(index.key[np.flatnonzero(index.shard == 0)[0]])     # in the deleted tar
    r = client.get(f"/img/toy-broken/train/{key}?size=96")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert missing in r.headers["X-Shardforge-Error"]
    assert Image.open(io.BytesIO(r.content)).size == (96, 96)
    page = client.get(f"/d/toy-broken/sample/train/{key}")
    assert page.status_code == 200 and "Traceback" not in page.text
    assert 'id="image-error"' in page.text and "is missing" in page.text
    assert "stores augmentations, not images" not in page.text     # its own images
    grid = client.get("/d/toy-broken/grid")
    assert grid.status_code == 200 and f"shard {missing} is missing" in grid.text
    other = str(index.key[np.flatnonzero(index.shard == 1)[0]])      # other tars still read
    assert "X-Shardforge-Error" not in client.get(f"/img/toy-broken/train/{other}").headers


def test_an_unexpected_fault_is_a_one_line_500_page(cat, monkeypatch):
    from shardforge.view import pages

    def boom(home):
        raise RuntimeError("the catalog fell over")

    monkeypatch.setattr(pages, "catalog_page", boom)
    r = TestClient(create_app(cat["home"]), raise_server_exceptions=False).get("/")
    assert r.status_code == 500
    assert "RuntimeError: the catalog fell over" in r.text and "Traceback" not in r.text


def test_empty_catalog_page_says_how_to_fill_it(tmp_path):
    r = TestClient(create_app(str(tmp_path / "empty"))).get("/")
    assert r.status_code == 200 and "has no builds yet" in r.text


def test_sibling_members_of_first_and_last_samples(cat):
    from shardforge.layout.members import read_siblings, sample_meta
    from shardforge.layout.reader import RangeReader

    out = cat["builds"]["toy-stylized"].out
    index = open_dataset(out).split("train")
    reader = RangeReader(index.shard_urls)
    for p in (0, len(index) - 1):                # the last sample ends at the archive's end
        s = int(index.shard[p])
        sib = read_siblings(reader, s, int(index.offset[p]), int(index.size[p]),
                            str(index.key[p]), os.path.getsize(index.shard_urls[s]))
        assert sib["cls"] == str(index.label[p]).encode()
        meta = sample_meta(sib)
        assert meta["key"] == index.key[p] and meta["style_key"].startswith("demo-style-")
    reader.close()
    assert sample_meta({}) == {}
    with pytest.raises(ValueError, match="not an object"):
        sample_meta({"json": b"[1, 2]"})


def test_cli_registers_view_and_names_a_busy_port(cat, capsys):
    import socket

    from shardforge.cli import main
    from shardforge.cli.main import build_parser

    args = build_parser().parse_args(["view", "--home", cat["home"]])
    assert (args.host, args.port) == ("127.0.0.1", 8765)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["view", "--home", cat["home"], "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_charts_summarise_many_classes():
    from shardforge.view.charts import class_counts_chart

    counts = np.full(1000, 1300)
    counts[3], counts[999] = 732, 1301
    svg = class_counts_chart(counts, [f"n{k:08d}" for k in range(1000)])
    tips = re.findall(r"<title>([^<]+)</title>", svg)
    assert len(tips) == 1000 and tips[0] == "n00000999: 1,301" and tips[-1] == "n00000003: 732"
    assert "1,000 classes sorted by count" in svg
