"""A miniature ImageNet download with the real layout, for the imagenet-archive tests.

``ILSVRC2012_img_train.tar`` holds one ``WNID.tar`` per class, each holding
``WNID_N.JPEG``; ``ILSVRC2012_img_val.tar`` is flat (``ILSVRC2012_val_0000000N.JPEG``);
``ILSVRC2012_devkit_t12.tar.gz`` holds ``data/meta.mat`` (written by scipy, the devkit's
``synsets`` fields, with one non-leaf synset as in the real file) and the ground truth.
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850"]     # sorted: labels 0, 1, 2
IDS = {"n01484850": 1, "n01440764": 2, "n01443537": 3}   # ILSVRC2012_IDs, not sorted
PER_CLASS = 4
VAL_WNIDS = ["n01443537", "n01440764", "n01484850", "n01484850", "n01440764", "n01443537"]


def jpeg(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    """A small JPEG with content that differs per seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar of ``(name, data)`` regular files, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def meta_mat(ids: dict[str, int]) -> bytes:
    """A devkit ``meta.mat``: the leaf synsets of ``ids`` plus one parent synset."""
    import scipy.io

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    rows = [(idx, wnid, f"words {wnid}", "gloss", 0, np.zeros((1, 0)), 0, PER_CLASS)
            for wnid, idx in ids.items()]
    rows.append((1001, "n00001740", "entity", "gloss", len(ids),
                 np.array(sorted(ids.values())), 1, 0))
    table = np.array(rows, dtype=[(f, "O") for f in fields]).reshape(-1, 1)
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": table})
    return buf.getvalue()


def devkit(val_wnids: list[str], ids: dict[str, int] = IDS) -> bytes:
    """``ILSVRC2012_devkit_t12.tar.gz``: meta.mat and the ground truth of ``val_wnids``."""
    truth = "".join(f"{ids[w]}\n" for w in val_wnids).encode()
    members = [("ILSVRC2012_devkit_t12/data/meta.mat", meta_mat(ids)),
               ("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def val_name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


def make_download(root: str, *, with_devkit: bool = True, train_extra=(),
                  val_extra=()) -> dict[str, tuple[str, bytes]]:
    """Write the three archives under ``root``; return ``{origin: (wnid, jpeg bytes)}``
    of every good image, origins as the source names them (``ARCHIVE#...``).
    ``train_extra`` / ``val_extra``: more ``(name, bytes)`` members of the outer archives."""
    os.makedirs(root, exist_ok=True)
    expected, outer = {}, []
    for c, wnid in enumerate(WNIDS):
        inner = []
        for i in range(PER_CLASS):
            name = f"{wnid}_{1000 + i}.JPEG"
            data = jpeg(100 * c + i)
            inner.append((name, data))
            expected[f"ILSVRC2012_img_train.tar#{wnid}.tar#{name}"] = (wnid, data)
        outer.append((f"{wnid}.tar", tar_bytes(inner)))
    write(root, "ILSVRC2012_img_train.tar", tar_bytes(outer + list(train_extra)))
    val = []
    for i, wnid in enumerate(VAL_WNIDS, 1):
        data = jpeg(1000 + i, (24 + i, 30))
        val.append((val_name(i), data))
        expected[f"ILSVRC2012_img_val.tar#{val_name(i)}"] = (wnid, data)
    write(root, "ILSVRC2012_img_val.tar", tar_bytes(val + list(val_extra)))
    if with_devkit:
        write(root, "ILSVRC2012_devkit_t12.tar.gz", devkit(VAL_WNIDS))
    return expected


def write(root: str, name: str, data: bytes) -> None:
    with open(os.path.join(root, name), "wb") as f:
        f.write(data)
