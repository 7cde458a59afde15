"""Reading shardforge outputs back with the real clients (FFCV Loader, webdataset, tar)."""

from __future__ import annotations

import glob
import json
import os
import tarfile

import pyarrow.parquet as pq


def tree_files(root: str) -> dict[str, tuple[str, int]]:
    """{relpath: (class name, ImageFolder label)} of a class-folder tree with split dirs."""
    from torchvision.datasets import ImageFolder

    out = {}
    for split in sorted(os.listdir(root)):
        folder = ImageFolder(os.path.join(root, split))
        for path, label in folder.samples:
            rel = os.path.relpath(path, root)
            out[rel] = (folder.classes[label], label)
    return out


def index_rows(out: str) -> list[dict]:
    return pq.read_table(os.path.join(out, "index.parquet")).to_pylist()


def ffcv_labels(beton_path: str) -> list[int]:
    """Labels of every sample, in file order, read by ffcv.loader.Loader."""
    from ffcv.fields.decoders import CenterCropRGBImageDecoder, IntDecoder
    from ffcv.loader import Loader, OrderOption

    loader = Loader(beton_path, batch_size=16, num_workers=1, order=OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines={"image": [CenterCropRGBImageDecoder((32, 32), 1.0)],
                                                "label": [IntDecoder()]})
    labels: list[int] = []
    for _images, batch_labels in loader:
        labels.extend(int(x) for x in batch_labels.ravel().tolist())
    return labels


def wds_samples(out: str, name: str, split: str) -> list[tuple[str, int, dict]]:
    """(key, label, json) of every sample in the split's tars, read by webdataset."""
    import webdataset as wds

    urls = sorted(glob.glob(os.path.join(out, "wds", f"{name}-{split}-*.tar")))
    ds = wds.WebDataset(urls, shardshuffle=False).to_tuple("__key__", "cls", "json")
    return [(k, int(c), json.loads(j)) for k, c, j in ds]


def file_bytes(out: str) -> dict[str, bytes]:
    """Bytes of every shard, .beton and index file below ``out`` (excluding summary/work)."""
    found = {}
    for pattern in ("wds/*.tar", "beton/*.beton", "index.parquet", "rejects.jsonl"):
        for path in sorted(glob.glob(os.path.join(out, pattern))):
            with open(path, "rb") as f:
                found[os.path.relpath(path, out)] = f.read()
    return found


def tar_names(path: str) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()
