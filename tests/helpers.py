"""Reading shardforge outputs back with the real clients (FFCV Loader, webdataset, tar)."""

from __future__ import annotations

import contextlib
import glob
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


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


def tree_sha256(root: str) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    import hashlib

    found = {}
    for d, _dirs, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as f:
                found[os.path.relpath(os.path.join(d, n), root)] = hashlib.sha256(
                    f.read()).hexdigest()
    return found


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


def tar_images(out: str) -> dict[str, bytes]:
    """{key: image bytes} of every sample in ``out``'s tars."""
    images = {}
    for rel in sorted(n for n in os.listdir(os.path.join(out, "wds")) if n.endswith(".tar")):
        with tarfile.open(os.path.join(out, "wds", rel)) as tar:
            for m in tar.getmembers():
                if m.name.endswith((".jpg", ".png")):
                    images[m.name.split(".", 1)[0]] = tar.extractfile(m).read()
    return images


def image_pixels(data: bytes) -> np.ndarray:
    """RGB pixels of encoded image bytes (PIL)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """Live processes of the session ``sid`` (started with ``start_new_session=True``)."""
    out = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True).stdout
    return [int(p) for p, s_, st in (ln.split() for ln in out.splitlines() if ln.strip())
            if s_ == str(sid) and not st.startswith("Z")]


def kill_session(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM every process of the session we created, then SIGKILL what is left.

    Ray puts each worker in its own process group, but all stay in this session, so
    this stops exactly the Ray processes the test started and nothing else.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _session_pids(proc.pid):
            time.sleep(0.2)
    proc.wait(timeout=10)


@contextlib.contextmanager
def local_ray_head(num_cpus: int = 2) -> Iterator[tuple[str, dict]]:
    """A private `ray start --head` on 127.0.0.1 (random ports, random auth token) in its
    own session; yields ``(dashboard address, env for ray CLI calls)`` and stops exactly
    the processes it started."""
    gcs, dash = free_port(), free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16),
               PATH=f"{BIN}:{os.environ['PATH']}")
    head = subprocess.Popen(
        [f"{BIN}/ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(gcs), "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
         "--ray-client-server-port", str(free_port()),
         "--dashboard-agent-listen-port", str(free_port()),
         "--num-cpus", str(num_cpus), "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        address = f"http://127.0.0.1:{dash}"
        deadline = time.monotonic() + 120
        while subprocess.run([f"{BIN}/ray", "job", "list", "--address", address], env=env,
                             capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "Ray head did not come up in 120 s"
            assert head.poll() is None, "ray start --head exited"
            time.sleep(1)
        yield address, env
    finally:
        kill_session(head)
