"""Benchmark training-time loaders on the same stored images: images/s of

* shardforge's WebDataset stream (``shardforge.stream.make_loader``: byte-range reads from
  the tars, crop-first decode, ``RandomResizedCrop(S)`` + flip, uint8 HWC batches), with
  worker processes (the default) and with decoding threads (``worker_kind="thread"``);
* FFCV ``ffcv.loader.Loader`` on the .beton of the same ingest:
  ``RandomResizedCropRGBImageDecoder((S, S))`` + ``RandomHorizontalFlip()`` (+ ``ToTensor``),
  uint8 HWC batches, ``OrderOption.RANDOM``, ``os_cache=True``;
* torchvision ``ImageFolder`` + ``DataLoader`` (``RandomResizedCrop(S)``,
  ``RandomHorizontalFlip()``, ``PILToTensor()``; uint8 CHW) over the ingested JPEGs
  extracted to a class-folder tree;

all with the same worker count and batch size, plus single-core per-image rates (PIL
full decode, PIL draft decode, OpenCV decode, shardforge's whole per-sample step) as the
ceiling. Data: natural photos (``bench/photos.py``, the default) or the demo dataset
(``--corpus demo``: ``generate_demo_data``, sides 256-512), ingested at
``--max-res`` (cached under ``--work``). One warm-up epoch per method (FFCV compiles its
pipeline), then ``--repeats`` rounds, each timing one epoch of every method (interleaved,
as the machine may be shared); the best epoch counts. Results go to the ``loaders``
section of ``--out-md`` and to ``WORK/results-loaders.json``; the section's figure
(images/s and CPU per image against the ideal) to ``docs/bench/loaders.png`` next to
``--out-md`` (``--plot-only JSON`` redraws it from a results file).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import plots  # noqa: E402
from loaders_report import METHODS, report  # noqa: E402

SECTION = "loaders"


# --------------------------------------------------------------------------------------------
# Data: demo images -> shardforge ingest (tars + .beton) -> ImageFolder tree of the same JPEGs
# --------------------------------------------------------------------------------------------

def src_dir(args) -> Path:
    """The source class-folder tree (the train split's)."""
    if args.corpus == "photos":
        import photos

        root, _, _ = photos.ensure_corpus(
            photos.PhotoCorpus(images=args.per_class * args.classes, classes=args.classes),
            Path(args.work), args.workers)
        return root
    return Path(args.work) / f"src-pc{args.per_class}-c{args.classes}-s256-512" / "train"


def ensure_data(args) -> tuple[Path, Path]:
    """(ingest output, ImageFolder root), built once per parameter set under ``--work``."""
    from shardforge.sources.demo import DemoSpec, generate_demo_data

    work = Path(args.work)
    tag = f"{args.corpus}-pc{args.per_class}-c{args.classes}-r{args.max_res}"
    src, out, folder = src_dir(args), work / f"out-{tag}", work / f"imagefolder-{tag}"
    if args.corpus == "demo" and not (src.parent / ".done").exists():
        t0 = time.perf_counter()
        print(f"generating demo images in {src} ...", file=sys.stderr)
        generate_demo_data(src.parent, DemoSpec(num_classes=args.classes,
                                                train_per_class=args.per_class,
                                                val_per_class=0, min_side=256, max_side=512))
        (src.parent / ".done").write_text("ok")
        print(f"  {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if not (out / "summary.json").exists():
        t0 = time.perf_counter()
        print(f"ingesting into {out} ...", file=sys.stderr)
        # A child process owns Ray, so this process never forks a Ray driver.
        subprocess.run([sys.executable, "-m", "shardforge.cli", "ingest", str(src),
                        "--name", "bench", "--out", str(out), "--max-res", str(args.max_res),
                        "--no-register"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        print(f"  {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if not (folder / ".done").exists():
        extract_imagefolder(out, folder)
        (folder / ".done").write_text("ok")
    return out, folder


def extract_imagefolder(out: Path, folder: Path) -> None:
    """Write every ingested JPEG (the exact tar bytes) to FOLDER/CLASS/KEY.jpg."""
    import pyarrow.parquet as pq

    classes = json.loads((out / "summary.json").read_text())["classes"]
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
    for row in pq.read_table(out / "index.parquet").to_pylist():
        if row["format"] != "jpg":
            raise SystemExit(f"{row['key']} is stored as {row['format']}; ImageFolder needs JPEG")
        with open(out / "wds" / row["shard"], "rb") as f:
            f.seek(row["offset"])
            data = f.read(row["size"])
        (folder / classes[row["label"]] / f"{row['key']}.jpg").write_bytes(data)


# --------------------------------------------------------------------------------------------
# Loaders: each a factory returning a re-iterable; one iteration = one epoch
# --------------------------------------------------------------------------------------------

def shardforge_loader(out: Path, args, worker_kind: str = "process"):
    from shardforge.stream import RandomResizedCrop, make_loader

    return make_loader(str(out), "train", args.batch_size, num_workers=args.workers,
                       transform=RandomResizedCrop(args.size), seed=0, worker_kind=worker_kind)


def ffcv_loader(out: Path, args):
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import RandomHorizontalFlip, ToTensor

    beton = out / "beton" / "bench-train.beton"
    return Loader(str(beton), batch_size=args.batch_size, num_workers=args.workers,
                  order=OrderOption.RANDOM, os_cache=True, drop_last=False, seed=0,
                  pipelines={"image": [RandomResizedCropRGBImageDecoder((args.size, args.size)),
                                       RandomHorizontalFlip(), ToTensor()],
                             "label": [IntDecoder(), ToTensor()]})


def imagefolder_loader(folder: Path, args):
    import torch
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    tf = transforms.Compose([transforms.RandomResizedCrop(args.size),
                             transforms.RandomHorizontalFlip(), transforms.PILToTensor()])
    return torch.utils.data.DataLoader(ImageFolder(str(folder), transform=tf),
                                       batch_size=args.batch_size, shuffle=True,
                                       num_workers=args.workers, persistent_workers=True)


def time_epoch(loader, expect: int, size: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds of one full epoch; checks count and shape."""
    cpu0, t0 = common.tree_cpu_seconds(include_reaped=True), time.perf_counter()
    seen = 0
    for images, labels in loader:
        if tuple(images.shape[-3:]) not in ((size, size, 3), (3, size, size)):
            raise RuntimeError(f"unexpected image batch shape {tuple(images.shape)}")
        seen += len(labels)
    wall = time.perf_counter() - t0
    if seen != expect:
        raise RuntimeError(f"an epoch yielded {seen} samples, expected {expect}")
    return wall, common.tree_cpu_seconds(include_reaped=True) - cpu0


# --------------------------------------------------------------------------------------------
# Single-core reference rates
# --------------------------------------------------------------------------------------------

def _rates(fns: dict, items: list, passes: int) -> dict[str, float]:
    """Best images/s of each function over ``passes`` passes, passes interleaved (shared
    machine: the fastest pass is the least disturbed one, and all see the same load)."""
    best = dict.fromkeys(fns, 0.0)
    for fn in fns.values():
        fn(items[0])
    for _ in range(passes):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for item in items:
                fn(item)
            best[name] = max(best[name], len(items) / (time.perf_counter() - t0))
    return best


def single_core_rates(out: Path, size: int, sample: int, passes: int) -> dict:
    """Images/s on one core of decode alone and of shardforge's whole per-sample step."""
    from shardforge.formats.decode import dct_reduction, decode_crop, decode_jpeg_region
    from shardforge.layout.reader import RangeReader
    from shardforge.stream import RandomResizedCrop, open_dataset

    idx = open_dataset(str(out)).split("train")
    pos = np.linspace(0, len(idx) - 1, min(sample, len(idx))).astype(int)
    blobs = [bytes(b) for b in RangeReader(idx.shard_urls).read(idx.shard[pos], idx.offset[pos],
                                                                idx.size[pos])]
    rng = np.random.default_rng(0)
    tf = RandomResizedCrop(size)
    boxes, flips = tf.plan(idx.width[pos], idx.height[pos], rng)
    items = [(b, int(idx.width[p]), int(idx.height[p]), tuple(box.tolist()), bool(flip))
             for b, p, box, flip in zip(blobs, pos, boxes, flips, strict=True)]
    reductions = [dct_reduction(box[2], box[3], size, size) for _, _, _, box, _ in items]
    out_buf = np.empty((size, size, 3), np.uint8)
    scratch = np.empty(int((idx.width[pos].astype(np.int64) * idx.height[pos]).max()) * 3,
                       np.uint8)

    def pil(item, reduction: int | None = None) -> None:
        data, w, h, box, _ = item
        img = Image.open(io.BytesIO(data))
        r = dct_reduction(box[2], box[3], size, size) if reduction is None else reduction
        if r > 1:
            img.draft("RGB", (w // r, h // r))
        img.load()

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rates = _rates({
            "pil_full_decode": lambda it: pil(it, 1),
            "pil_draft_decode": pil,
            "pil_draft_half": lambda it: pil(it, 2),
            "cv2_full_decode": lambda it: cv2.imdecode(np.frombuffer(it[0], np.uint8),
                                                       cv2.IMREAD_COLOR_RGB),
            "simplejpeg_into_buffer": lambda it: simplejpeg.decode_jpeg(it[0], "rgb",
                                                                        buffer=scratch),
            "region_decode": lambda it: decode_jpeg_region(it[0], it[1], it[2], it[3],
                                                           scratch),
            "sha256": lambda it: hashlib.sha256(it[0]).digest(),
            "shardforge_step": lambda it: decode_crop(it[0], False, it[1], it[2], it[3],
                                                      out_buf, it[4], scratch=scratch),
        }, items, passes)
    finally:
        cv2.setNumThreads(threads)
    rates["draft_share"] = float(np.mean(np.array(reductions) > 1))
    rates["mean_bytes"] = float(np.mean([len(b) for b in blobs]))
    return rates


def dct_effect(src: Path, size: int, sample: int, passes: int) -> dict:
    """Single-core shardforge step with and without DCT scaling on the *source* JPEGs
    (256-512 px: larger than the stored ones, as with a higher ``--max-res``)."""
    from shardforge.formats.decode import dct_reduction, decode_crop
    from shardforge.stream import RandomResizedCrop

    paths = sorted(src.glob("*/*.JPEG"))
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int)]
    blobs = [p.read_bytes() for p in paths]
    sizes = np.array([Image.open(io.BytesIO(b)).size for b in blobs])
    boxes, flips = RandomResizedCrop(size).plan(sizes[:, 0], sizes[:, 1],
                                                np.random.default_rng(0))
    items = [(b, int(w), int(h), tuple(box.tolist()), bool(f))
             for b, (w, h), box, f in zip(blobs, sizes, boxes, flips, strict=True)]
    out_buf = np.empty((size, size, 3), np.uint8)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rates = _rates({
            "dct": lambda it: decode_crop(it[0], False, it[1], it[2], it[3], out_buf, it[4]),
            "full": lambda it: decode_crop(it[0], False, it[1], it[2], it[3], out_buf, it[4],
                                           dct=False),
        }, items, passes)
    finally:
        cv2.setNumThreads(threads)
    reductions = [dct_reduction(b[2], b[3], size, size) for b in boxes]
    rates["draft_share"] = float(np.mean(np.array(reductions) > 1))
    rates["mean_side"] = float(sizes.max(axis=1).mean())
    return rates


# --------------------------------------------------------------------------------------------
# Driver and report
# --------------------------------------------------------------------------------------------



def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", choices=("photos", "demo"), default="photos",
                   help="natural photos (bench/photos.py) or procedural demo images")
    p.add_argument("--per-class", type=int, default=300, help="train images per class")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--max-res", type=int, default=256, help="ingest max resolution")
    p.add_argument("--size", type=int, default=160, help="RandomResizedCrop output side")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2, help="workers for every loader")
    p.add_argument("--repeats", type=int, default=6, help="timed epochs per method (best counts)")
    p.add_argument("--decode-sample", type=int, default=300)
    p.add_argument("--work", default="/tmp/sf-bench-loaders")
    p.add_argument("--out-md", help="write the results into this markdown file's section")
    p.add_argument("--plot-only", metavar="JSON",
                   help="only draw the figure from a results-loaders.json (no runs)")
    args = p.parse_args(argv)
    if args.plot_only:
        figure(json.loads(Path(args.plot_only).read_text()), args)
        return 0
    wall0 = time.perf_counter()
    out, folder = ensure_data(args)
    summary = json.loads((out / "summary.json").read_text())
    n = summary["splits"]["train"]["samples"]
    print(f"{n} samples, {summary['bytes_per_sample']:.0f} B each in the tars", file=sys.stderr)

    results: dict = {"samples": n, "args": vars(args), "methods": {}, "loadavg": []}
    results["single_core"] = single_core_rates(out, args.size, args.decode_sample, 5)
    results["dct_effect"] = dct_effect(src_dir(args), args.size, args.decode_sample, 5)
    print(f"single core: {results['single_core']}", file=sys.stderr)

    loaders = {"shardforge": shardforge_loader(out, args),
               "shardforge_threads": shardforge_loader(out, args, "thread"),
               "ffcv": ffcv_loader(out, args),
               "imagefolder": imagefolder_loader(folder, args)}
    for name, loader in loaders.items():          # warm-up: page cache, FFCV JIT
        t0 = time.perf_counter()
        time_epoch(loader, n, args.size)
        results["methods"][name] = {"warmup_s": time.perf_counter() - t0, "runs": [], "cpu": []}
    for _ in range(args.repeats):
        for name, loader in loaders.items():
            results["loadavg"].append(os.getloadavg()[0])
            wall, cpu = time_epoch(loader, n, args.size)
            entry = results["methods"][name]
            entry["runs"].append(wall)
            entry["cpu"].append(cpu)
            print(f"{name}: {n / wall:.0f} img/s ({wall:.2f} s, {cpu:.1f} CPU s), "
                  f"loadavg {results['loadavg'][-1]:.1f}", file=sys.stderr)
    for entry in results["methods"].values():
        best = min(entry["runs"])
        entry["best_s"] = best
        entry["images_per_s"] = n / best
        entry["cpu_ms_per_image"] = 1000 * entry["cpu"][entry["runs"].index(best)] / n
    results["wall_s"] = time.perf_counter() - wall0
    (Path(args.work) / "results-loaders.json").write_text(json.dumps(results, indent=2))
    link = figure(results, args)
    common.publish(report(results, args, summary, link), args.out_md, SECTION)
    return 0


def figure(results: dict, args) -> str | None:
    """Draw the section's figure (when matplotlib is installed); its link, or None."""
    path, link = plots.section_figure(args.out_md, SECTION, args.work)
    if plots.try_plot(plots.plot_throughput, plots.loaders_summary(results, METHODS),
                      path) is None:
        return None
    return link


if __name__ == "__main__":
    raise SystemExit(main())
