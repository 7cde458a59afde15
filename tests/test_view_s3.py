"""`shardforge view` over a dataset on s3:// (moto's S3 server on 127.0.0.1): thumbnails,
stored bytes and metadata come from the objects by byte range, as from local files."""

from __future__ import annotations

import io
import json
import os

import pytest
from test_s3 import s3_env, s3_server  # noqa: F401  (fixtures)

from shardforge.layout.dataset import open_dataset

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from shardforge.view.app import create_app  # noqa: E402


def test_pages_and_images_of_a_dataset_on_s3(demo_dataset, s3_server, tmp_path):  # noqa: F811
    from PIL import Image

    from shardforge.catalog import register_build

    s3_server.upload_tree(demo_dataset, "view/demo")
    url = s3_server.url("view/demo")
    with open(os.path.join(demo_dataset, "summary.json")) as f:
        summary = json.load(f)
    home = str(tmp_path / "home")
    register_build(home, "s3demo", {**summary, "out": url})
    client = TestClient(create_app(home))
    index = open_dataset(demo_dataset).split("train")
    key, p = str(index.key[5]), 5
    with open(index.shard_urls[index.shard[p]], "rb") as f:
        f.seek(int(index.offset[p]))
        stored = f.read(int(index.size[p]))
    r = client.get(f"/img/s3demo/train/{key}")
    assert r.status_code == 200 and r.content == stored
    thumb = client.get(f"/img/s3demo/train/{key}?size=48")
    assert "X-Shardforge-Error" not in thumb.headers
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 48
    page = client.get(f"/d/s3demo/sample/train/{key}")
    assert page.status_code == 200 and "orig_width" in page.text and "image-error" not in page.text
    assert client.get("/d/s3demo").status_code == 200
    assert client.get("/d/s3demo/grid?n=2").status_code == 200
