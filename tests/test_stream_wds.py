"""The WebDataset streaming loader (shardforge.stream): partitioning, resume, decoding.

One small dataset is ingested per module (demo tree: train 60 / val 20, stored at most
96 px, shards of 16, write mode ``proportion`` so about half the samples are raw-mode
PNGs). Loaders run with real DataLoader worker processes.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections import Counter

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from shardforge.build.config import IngestConfig
from shardforge.catalog.ingest import ingest
from shardforge.formats.decode import (
    DecodeError,
    center_crop_box,
    dct_reduction,
    decode_crop,
    decode_full,
    decode_full_pil,
    random_resized_crop_box,
    scaled_box,
)
from shardforge.formats.image import ImageParams
from shardforge.layout.reader import RangeReader
from shardforge.sources.base import SourceOptions
from shardforge.sources.demo import DemoSpec, render_demo_image
from shardforge.storage import resolve
from shardforge.stream import (
    CenterCrop,
    DatasetNotFoundError,
    IntegrityError,
    RandomResizedCrop,
    make_loader,
    open_dataset,
    open_shards,
    resolve_dataset,
)
from shardforge.stream.partition import epoch_order, rank_positions, samples_per_rank

WORLD = 3
WORKERS = 2


@pytest.fixture(scope="module")
def out(ray_local, demo_tree, tmp_path_factory) -> str:
    dest = str(tmp_path_factory.mktemp("stream") / "out")
    ingest(IngestConfig(source=demo_tree, name="demo", out=dest,
                        image=ImageParams(max_resolution=96, write_mode="proportion"),
                        source_options=SourceOptions(shard_size=16)), log=io.StringIO())
    return dest


@pytest.fixture(scope="module")
def index(out) -> dict[str, dict]:
    rows = pq.read_table(os.path.join(out, "index.parquet")).to_pylist()
    return {r["key"]: r for r in rows}


def epoch_batches(loader) -> list[tuple[torch.Tensor, list[int], list[str]]]:
    return [(images, labels.tolist(), keys) for images, labels, keys in loader]


def flat_keys(batches) -> list[str]:
    return [k for _, _, keys in batches for k in keys]


def rank_loaders(out, split, remainder="pad", **kw):
    return [make_loader(out, split, 3, rank=r, world_size=WORLD, num_workers=WORKERS,
                        remainder=remainder, with_keys=True,
                        transform=kw.pop("transform", RandomResizedCrop(16)), **kw)
            for r in range(WORLD)]


def tar_member(out: str, row: dict) -> bytes:
    with tarfile.open(os.path.join(out, "wds", row["shard"])) as tar:
        return tar.extractfile(f"{row['key']}.{row['format']}").read()


# ------------------------------------------------------------------------ partitioning

@pytest.mark.parametrize("split,remainder", [("train", "pad"), ("val", "pad"), ("val", "drop")])
def test_ranks_get_equal_disjoint_shares(out, index, split, remainder):
    keys = {k for k, r in index.items() if r["split"] == split}
    n = len(keys)
    per_rank = -(-n // WORLD) if remainder == "pad" else n // WORLD
    shares = []
    for loader in rank_loaders(out, split, remainder):
        batches = epoch_batches(loader)
        assert len(batches) == -(-per_rank // 3)
        assert [len(b[2]) for b in batches[:-1]] == [3] * (len(batches) - 1)
        shares.append(flat_keys(batches))
        assert loader.state_dict()["samples_seen"] == per_rank
    assert [len(s) for s in shares] == [per_rank] * WORLD
    seen = Counter(k for s in shares for k in s)
    assert set(seen) <= keys
    if remainder == "pad":
        assert set(seen) == keys                                  # every sample seen
        repeats = per_rank * WORLD - n
        assert sum(c - 1 for c in seen.values()) == repeats       # only the pad repeats
        perm_start = shares[0][:repeats]                          # they are the order's first
        assert shares[-1][len(shares[-1]) - repeats:] == perm_start
    else:
        assert set(seen.values()) == {1}                          # disjoint
        assert len(seen) == n - n % WORLD                         # all but the remainder


@pytest.mark.parametrize("persistent", [True, False])
def test_order_changes_per_epoch_and_repeats_per_seed(out, persistent):
    loader = make_loader(out, "train", 4, rank=1, world_size=WORLD, num_workers=WORKERS,
                         seed=7, with_keys=True, transform=RandomResizedCrop(16),
                         persistent_workers=persistent)
    first, second = epoch_batches(loader), epoch_batches(loader)   # auto-advances the epoch
    assert loader.epoch == 1
    assert flat_keys(first) != flat_keys(second)
    assert set(flat_keys(first)) != set(flat_keys(second))         # rank shares move too
    again = make_loader(out, "train", 4, rank=1, world_size=WORLD, num_workers=WORKERS,
                        seed=7, with_keys=True, transform=RandomResizedCrop(16))
    repeat = epoch_batches(again)
    assert flat_keys(repeat) == flat_keys(first)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, repeat, strict=True))
    other = make_loader(out, "train", 4, rank=1, world_size=WORLD, num_workers=WORKERS,
                        seed=8, with_keys=True, transform=RandomResizedCrop(16))
    assert flat_keys(epoch_batches(other)) != flat_keys(first)
    loader.set_epoch(0)
    assert flat_keys(epoch_batches(loader)) == flat_keys(first)


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
def test_worker_count_changes_nothing(out):
    runs = []
    for workers in (0, 1, 3):
        loader = make_loader(out, "train", 5, rank=2, world_size=WORLD, num_workers=workers,
                             with_keys=True, transform=RandomResizedCrop(16))
        runs.append(epoch_batches(loader))
    for other in runs[1:]:
        assert flat_keys(other) == flat_keys(runs[0])
        assert all(torch.equal(a[0], b[0]) for a, b in zip(runs[0], other, strict=True))


def test_partition_rules():
    assert samples_per_rank(20, 3, "pad") == 7 and samples_per_rank(20, 3, "drop") == 6
    order = epoch_order(20, seed=0, epoch=0)
    assert sorted(order.tolist()) == list(range(20))
    assert rank_positions(order, 2, 3, "pad").tolist() == [*order[14:], order[0]]
    assert rank_positions(order, 2, 3, "drop").tolist() == order[12:18].tolist()
    # more ranks than samples: pad repeats the order cyclically
    assert rank_positions(np.arange(2), 2, 3, "pad").tolist() == [0]
    with pytest.raises(ValueError, match="pad"):
        samples_per_rank(2, 3, "drop")
    # windowed shard order: each window of 4 samples holds whole runs of one shard
    shard = np.repeat(np.arange(5), 4)
    shards_order = epoch_order(20, 1, 0, "shards", shard, window=4)
    windows = shard[shards_order].reshape(5, 4)
    assert all(len(set(w)) == 1 for w in windows)
    assert sorted(windows[:, 0].tolist()) == list(range(5))


# ------------------------------------------------------------------------ resume

def test_mid_epoch_resume_yields_exactly_the_unseen_samples(out):
    def loader(**kw):
        return make_loader(out, "train", 3, rank=1, world_size=WORLD, num_workers=WORKERS,
                           seed=3, epoch=2, with_keys=True, transform=RandomResizedCrop(16),
                           **kw)

    full = epoch_batches(loader())
    interrupted = loader()
    head = []
    for batch in interrupted:
        head.append((batch[0], batch[1].tolist(), batch[2]))
        if len(head) == 3:
            break
    state = interrupted.state_dict()
    assert (state["epoch"], state["samples_seen"], state["seed"]) == (2, 9, 3)
    resumed = loader()
    resumed.set_epoch(0)                    # whatever it was doing, the state wins
    resumed.load_state_dict(state)
    resumed.set_epoch(2)                    # a DistributedSampler-style loop keeps the position
    assert len(resumed) == len(full) - 3
    tail = epoch_batches(resumed)
    assert flat_keys(head) + flat_keys(tail) == flat_keys(full)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(head + tail, full, strict=True))
    # the interrupted loader itself also continues where it stopped
    assert flat_keys(epoch_batches(interrupted)) == flat_keys(tail)
    # an exhausted epoch rolls over to the next on the next iteration
    assert resumed.state_dict()["samples_seen"] == 20
    nxt = epoch_batches(resumed)
    assert resumed.epoch == 3 and len(flat_keys(nxt)) == 20
    # a batch size change keeps the sample position
    other = make_loader(out, "train", 4, rank=1, world_size=WORLD, num_workers=0, seed=3,
                        with_keys=True, transform=RandomResizedCrop(16))
    other.load_state_dict(state)
    assert flat_keys(epoch_batches(other)) == flat_keys(tail)
    wrong = make_loader(out, "train", 3, rank=0, world_size=2, num_workers=0)
    with pytest.raises(ValueError, match="world_size"):
        wrong.load_state_dict(state)


# ------------------------------------------------------------------------ contents

def test_labels_and_bytes_match_index_and_tars(out, index):
    loader = make_loader(out, "val", 4, num_workers=WORKERS, with_keys=True, verify=True,
                         transform=CenterCrop(16))
    count = 0
    for images, labels, keys in loader:
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        for label, key in zip(labels.tolist(), keys, strict=True):
            row = index[key]
            assert label == row["label"]
            with tarfile.open(os.path.join(out, "wds", row["shard"])) as tar:
                assert int(tar.extractfile(f"{key}.cls").read()) == label
            count += 1
    assert count == 20


def test_output_shapes_and_layout(out):
    hwc = make_loader(out, "train", 8, num_workers=0, transform=RandomResizedCrop((24, 40)))
    images, labels = next(iter(hwc))
    assert images.shape == (8, 24, 40, 3) and labels.shape == (8,)
    chw = make_loader(out, "train", 8, num_workers=0, layout="chw",
                      transform=RandomResizedCrop((24, 40)))
    images_chw, _ = next(iter(chw))
    assert images_chw.shape == (8, 3, 24, 40)
    assert torch.equal(images_chw.permute(0, 2, 3, 1), images)
    last = list(make_loader(out, "train", 8, num_workers=WORKERS, transform=CenterCrop(16)))
    assert [b[0].shape[0] for b in last] == [8] * 7 + [4]
    dropped = list(make_loader(out, "train", 8, num_workers=WORKERS, drop_last=True,
                               transform=CenterCrop(16)))
    assert [b[0].shape[0] for b in dropped] == [8] * 7


def test_center_crop_matches_reference_decode(out, index):
    """Full decode + FFCV centre crop + INTER_AREA, from the tar members (JPEG and PNG)."""
    size = 32
    exact = make_loader(out, "val", 5, num_workers=WORKERS, order="sequential",
                        with_keys=True, transform=CenterCrop(size, dct=False))
    dct = make_loader(out, "val", 5, num_workers=WORKERS, order="sequential",
                      with_keys=True, transform=CenterCrop(size))
    formats, reduced = Counter(), 0
    for (images, _, keys), (dct_images, _, dct_keys) in zip(exact, dct, strict=True):
        assert keys == dct_keys
        for img, dct_img, key in zip(images.numpy(), dct_images.numpy(), keys, strict=True):
            row = index[key]
            formats[row["format"]] += 1
            data = tar_member(out, row)
            full = decode_full_pil(data)
            assert full.shape == (row["height"], row["width"], 3)
            top, left, h, w = center_crop_box(row["width"], row["height"])
            ref = cv2.resize(full[top:top + h, left:left + w], (size, size),
                             interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(img, ref)
            r = dct_reduction(h, w, size, size)
            if row["format"] == "jpg" and r > 1:
                # exactly PIL draft at 1/r, the box mapped onto it, INTER_AREA ...
                reduced += 1
                y0, x0, y1, x1 = scaled_box((top, left, h, w), r, row["width"], row["height"])
                drafted = decode_full_pil(data, r)[y0:y1, x0:x1]
                np.testing.assert_array_equal(
                    dct_img, cv2.resize(drafted, (size, size), interpolation=cv2.INTER_AREA))
                # ... and close to the full decode
                assert np.abs(dct_img.astype(int) - ref.astype(int)).mean() < 12, key
            else:
                np.testing.assert_array_equal(dct_img, ref)
    assert formats["jpg"] and formats["png"]       # both stored formats decoded
    assert reduced                                 # and the DCT path was taken


def test_dct_decode_close_to_full_decode():
    spec = DemoSpec(min_side=480, max_side=512)
    img, _ = render_demo_image(spec, "train", spec.classes[0], 0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    width, height = img.size
    # cv2's reduced decode is libjpeg DCT scaling, bit-identical to PIL's draft
    for r in (2, 4, 8):
        np.testing.assert_array_equal(decode_full(data, reduction=r), decode_full_pil(data, r))
    full = decode_full(data)
    rng = np.random.default_rng(0)
    size, used = 64, Counter()
    for _ in range(40):
        box = random_resized_crop_box(width, height, rng)
        fast, slow = (np.empty((size, size, 3), np.uint8) for _ in range(2))
        used[decode_crop(data, False, width, height, box, fast, dct=True)] += 1
        assert decode_crop(data, False, width, height, box, slow, dct=False) == 1
        # close to the full decode: about as close as an exact 1/r area downscale of the
        # full decode, cropped and resized the same way (two resamplings of fine grain)
        r = dct_reduction(box[2], box[3], size, size)
        y0, x0, y1, x1 = scaled_box(box, r, width, height)
        small = cv2.resize(full, (-(-width // r), -(-height // r)), interpolation=cv2.INTER_AREA)
        two_step = cv2.resize(small[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
        err = np.abs(fast.astype(int) - slow.astype(int)).mean()
        assert err < 8
        assert err < np.abs(two_step.astype(int) - slow.astype(int)).mean() + 2
        assert np.abs(fast.astype(int) - two_step.astype(int)).mean() < 3.5
    assert used[2] and used[4]            # several DCT scales exercised


def _jpegs() -> dict[str, bytes]:
    """JPEGs of the kinds a dataset may hold: OpenCV's (4:2:0, 4:4:4, progressive, restart
    markers), PIL's (4:2:2, optimised Huffman tables), greyscale, CMYK, odd sizes."""
    spec = DemoSpec(min_side=97, max_side=131)
    img, _ = render_demo_image(spec, "train", spec.classes[1], 3)
    rgb = np.asarray(img.convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    out = {}
    for name, params in {"cv2-420": [], "cv2-444": [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, 0x111111],
                         "cv2-progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
                         "cv2-restarts": [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]}.items():
        out[name] = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90, *params])[1].tobytes()
    for name, image, kw in (("pil-422", img.convert("RGB"), {"subsampling": 1, "optimize": True}),
                            ("grey", img.convert("L"), {}), ("cmyk", img.convert("CMYK"), {})):
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=85, **kw)
        out[name] = buf.getvalue()
    return out


def test_full_size_jpeg_decode_is_opencvs_pixel_for_pixel():
    """The full-size decode (simplejpeg into a scratch buffer) gives OpenCV's pixels for
    every kind of JPEG, fails where OpenCV fails, and so crops the same bytes."""
    scratch = np.empty(200 * 200 * 3, np.uint8)
    for name, data in _jpegs().items():
        want = cv2.imdecode(np.frombuffer(data, np.uint8),
                            cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
        for buffer in (None, scratch, np.empty(10, np.uint8)):      # too small: allocates
            got = decode_full(data, scratch=buffer)
            assert got.shape == want.shape and np.array_equal(got, want), name
        height, width = want.shape[:2]
        box = random_resized_crop_box(width, height, np.random.default_rng(2))
        crop, ref = (np.empty((40, 40, 3), np.uint8) for _ in range(2))
        decode_crop(data, False, width, height, box, crop, flip=True, scratch=scratch)
        top, left, h, w = box
        ref[:] = cv2.flip(cv2.resize(want[top:top + h, left:left + w], (40, 40),
                                     interpolation=cv2.INTER_AREA), 1)
        assert np.array_equal(crop, ref), name
    data = _jpegs()["cv2-420"]
    for cut in (len(data) // 2, 40):                                # damaged: OpenCV's call
        want = cv2.imdecode(np.frombuffer(data[:cut], np.uint8),
                            cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
        if want is None:
            with pytest.raises(DecodeError):
                decode_full(data[:cut], scratch=scratch)
        else:
            assert np.array_equal(decode_full(data[:cut], scratch=scratch), want)


def test_random_resized_crop_box_contract():
    rng = np.random.default_rng(1)
    for width, height in [(96, 64), (64, 96), (50, 50), (300, 20)]:
        for _ in range(200):
            top, left, h, w = random_resized_crop_box(width, height, rng)
            assert 0 <= top and 0 <= left and top + h <= height and left + w <= width
            assert h > 0 and w > 0
    # fallback for an extreme aspect ratio: centred box clamped to ratio 4/3
    assert random_resized_crop_box(300, 20, np.random.default_rng(0), scale=(0.99, 1.0)) == \
        (0, 136, 20, 27)
    assert center_crop_box(96, 64) == (4, 20, 56, 56)
    assert dct_reduction(256, 200, 64, 64) == 2 and dct_reduction(512, 520, 64, 64) == 8
    assert dct_reduction(100, 300, 64, 64) == 1


# ------------------------------------------------------------------------ datasets, reads

def test_open_dataset_and_errors(out, tmp_path):
    ds = open_dataset(out)
    assert ds.name == "demo" and sorted(ds.splits) == ["train", "val"]
    assert len(ds.split("train")) == 60 and ds.classes
    assert resolve_dataset(out) == out
    with pytest.raises(DatasetNotFoundError, match="summary.json"):
        resolve_dataset(str(tmp_path))
    with pytest.raises(KeyError, match="no split 'test'"):
        ds.split("test")
    tars = sorted(os.path.join(out, "wds", n) for n in os.listdir(os.path.join(out, "wds"))
                  if n.endswith(".tar"))
    sub = open_shards(tars[:2], os.path.join(out, "index.parquet"))
    assert sub.name == "demo" and list(sub.splits) == ["train"] and len(sub.split("train")) == 32
    keys = flat_keys(epoch_batches(make_loader(sub, "train", 8, num_workers=0, with_keys=True,
                                               transform=CenterCrop(16))))
    assert sorted(keys) == sorted(sub.split("train").key.tolist())


def test_reads_are_grouped_per_shard(out):
    idx = open_dataset(out).split("train")
    reader = RangeReader(idx.shard_urls)
    pos = np.arange(16)[::-1]               # one whole shard, in reverse
    blobs = reader.read(idx.shard[pos], idx.offset[pos], idx.size[pos])
    assert reader.requests == 1
    assert [len(b) for b in blobs] == idx.size[pos].tolist()
    separate = RangeReader(idx.shard_urls, gap=-1)
    assert [bytes(b) for b in separate.read(idx.shard[pos], idx.offset[pos], idx.size[pos])] \
        == [bytes(b) for b in blobs]
    assert separate.requests == 16
    reader.close()
    separate.close()


def test_verify_detects_changed_bytes(out, index, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    row = next(r for r in index.values() if r["split"] == "val")
    with open(os.path.join(copy, "wds", row["shard"]), "r+b") as f:
        f.seek(row["offset"] + row["size"] // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(IntegrityError, match=row["key"]):
        list(make_loader(copy, "val", 4, num_workers=0, verify=True, on_corrupt="strict",
                         transform=CenterCrop(16)))


def test_streams_from_s3_like_local(out, monkeypatch):
    """The same epoch from an s3:// copy (moto's server on 127.0.0.1) as from the local one."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "NO_PROXY": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "HTTP_PROXY",
                 "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing",
                     ).create_bucket(Bucket="stream")
        url = f"s3://stream/demo?endpoint_override=127.0.0.1:{port}&scheme=http"
        rels = ["summary.json", "index.parquet"] + [f"wds/{n}" for n in
                                                    os.listdir(os.path.join(out, "wds"))]
        for rel in rels:
            with open(os.path.join(out, rel), "rb") as f:
                resolve(url).join(rel).write_bytes_atomic(f.read())
        ds = open_dataset(url)
        assert ds.split("val").shard_urls[0].startswith("s3://stream/demo/wds/")
        kw = dict(rank=1, world_size=2, num_workers=WORKERS, with_keys=True, timeout=60,
                  transform=RandomResizedCrop(16), order="shards", window=8)
        remote = epoch_batches(make_loader(ds, "val", 4, **kw))
        local = epoch_batches(make_loader(out, "val", 4, **kw))
        assert flat_keys(remote) == flat_keys(local)
        assert all(torch.equal(a[0], b[0]) for a, b in zip(remote, local, strict=True))
    finally:
        server.stop()



def test_resolve_dataset_by_path_and_catalog_name(out, tmp_path):
    from shardforge import catalog
    from shardforge.catalog.lookup import resolve_dataset
    from shardforge.layout.dataset import DatasetNotFoundError

    assert resolve_dataset(out) == out
    # the fixture's ingest registered a build in the (test) catalog: find it by name@version
    ours = [b for b in catalog.list(all_versions=True) if b.out == out]
    assert len(ours) == 1
    assert resolve_dataset(f"{ours[0].name}@v{ours[0].version}") == out
    with pytest.raises(DatasetNotFoundError, match="neither"):
        resolve_dataset("no-such-dataset-xyz")
    with pytest.raises(DatasetNotFoundError, match="summary.json"):
        resolve_dataset(str(tmp_path))
