"""What integrity checks cost the WebDataset loader (``shardforge.stream``), to choose defaults.

Measures, on natural photos (scikit-image's bundled sample photos when scikit-image is
installed, else PIL-made gradient + noise images; the section says which):

* single core, per stored JPEG held in memory: ``hashlib.sha256`` of its bytes (what
  ``verify=True`` adds per sample) vs the loader's decode step (``decode_crop``:
  RandomResizedCrop(S) box, DCT-scaled OpenCV decode, INTER_AREA resize, flip) and a full
  decode;
* the loader end to end: ``make_loader(OUT, 'train', B, num_workers=W,
  transform=RandomResizedCrop(S), verify=...)`` epochs with checksums on and off
  (interleaved rounds, alternating which goes first; the median epoch each, as the best one of a shared machine is an
  outlier, plus the best and the CPU per image);
* per shard at first open: the size check (``check_shards``: a ``stat`` per tar) vs a
  full-shard sha256 (reading and hashing every tar once).

Data: each photo cut into ``--variants`` random crops (60-100% of its area, random
flip, long side 400-640 px), saved as JPEG q95 in one class folder per photo, ingested
with ``--max-res`` (JPEG q90, as ingest stores them). Cached under ``--work``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from photos import sample_photos  # noqa: E402

PACKAGES = ("shardforge", "torch", "opencv-python-headless", "pillow", "numpy", "scikit-image")
SECTION = "checksums"
def photos() -> tuple[list[np.ndarray], str]:
    """RGB uint8 photos and where they come from (bench/photos.py)."""
    return sample_photos()


def ensure_data(args) -> tuple[Path, str]:
    """The ingest output (built once under ``--work``) and the photos' description."""
    work = Path(args.work)
    imgs, what = photos()
    tag = f"v{args.variants}-r{args.max_res}-{'sk' if 'scikit' in what else 'pil'}"
    src, out = work / f"src-{tag}", work / f"out-{tag}"
    if not (src / ".done").exists():
        rng = np.random.default_rng(0)
        for k, img in enumerate(imgs):
            folder = src / f"photo{k:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            h, w = img.shape[:2]
            for v in range(args.variants):
                area = rng.uniform(0.6, 1.0)
                ch, cw = max(16, int(h * area ** 0.5)), max(16, int(w * area ** 0.5))
                y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
                crop = Image.fromarray(img[y0:y0 + ch, x0:x0 + cw])
                if rng.random() < 0.5:
                    crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                side = int(rng.integers(400, 641))
                scale = side / max(crop.size)
                crop = crop.resize((max(1, round(crop.size[0] * scale)),
                                    max(1, round(crop.size[1] * scale))), Image.BICUBIC)
                crop.save(folder / f"p{k:02d}_{v:04d}.JPEG", quality=95)
        (src / ".done").write_text("ok")
    if not (out / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "shardforge.cli", "ingest", str(src), "--name",
                        "checksums", "--out", str(out), "--max-res", str(args.max_res),
                        "--no-register"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
    return out, what


def single_core(out: Path, size: int, passes: int) -> dict:
    """Per-image microseconds of sha256, the loader's decode step and a full decode."""
    import cv2

    from shardforge.formats.decode import decode_crop, decode_full
    from shardforge.layout.reader import RangeReader
    from shardforge.stream import RandomResizedCrop, open_dataset

    cv2.setNumThreads(1)
    idx = open_dataset(str(out)).split("train")
    reader = RangeReader(idx.shard_urls)
    blobs = [bytes(b) for b in reader.read(idx.shard, idx.offset, idx.size)]
    reader.close()
    jpg = [k for k in range(len(blobs)) if not idx.is_png[k]]
    t = RandomResizedCrop(size)
    boxes, flips = t.plan(idx.width, idx.height, np.random.default_rng(0))
    dst = np.empty((size, size, 3), np.uint8)

    def sha() -> None:
        for k in jpg:
            hashlib.sha256(blobs[k]).hexdigest()

    def step() -> None:
        for k in jpg:
            decode_crop(blobs[k], False, int(idx.width[k]), int(idx.height[k]),
                        tuple(boxes[k].tolist()), dst, bool(flips[k]), True)

    def full() -> None:
        for k in jpg:
            decode_full(blobs[k])

    best = {name: float("inf") for name in ("sha256", "step", "full")}
    for _ in range(passes):
        for name, fn in (("sha256", sha), ("step", step), ("full", full)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    n = len(jpg)
    sizes = np.array([len(blobs[k]) for k in jpg])
    return {"images": n, "mean_bytes": float(sizes.mean()), "min_bytes": int(sizes.min()),
            "max_bytes": int(sizes.max()),
            "mean_side": float(np.mean(np.maximum(idx.width, idx.height))),
            **{f"{k}_us": v / n * 1e6 for k, v in best.items()},
            "sha256_mb_s": float(sizes.sum()) / best["sha256"] / 1e6}


def loader_epochs(out: Path, args) -> dict:
    """Interleaved epochs with verify on / off; best epoch and CPU per image each."""
    from shardforge.stream import RandomResizedCrop, make_loader

    loaders = {v: make_loader(str(out), "train", args.batch_size, num_workers=args.workers,
                              transform=RandomResizedCrop(args.size), verify=v)
               for v in (True, False)}
    res: dict = {v: {"epochs": [], "cpu_ms": []} for v in loaders}
    n = loaders[True].stream.samples_per_rank
    for ld in loaders.values():            # warm-up: worker start, page cache
        sum(len(b[1]) for b in ld)
    for r in range(args.repeats):
        for v in ((True, False) if r % 2 == 0 else (False, True)):   # ABBA: no order bias
            ld = loaders[v]
            c0, t0 = common.tree_cpu_seconds(), time.perf_counter()
            seen = sum(len(b[1]) for b in ld)
            wall, cpu = time.perf_counter() - t0, common.tree_cpu_seconds() - c0
            assert seen == n, (seen, n)
            res[v]["epochs"].append(wall)
            res[v]["cpu_ms"].append(cpu / n * 1e3)
        res["load"] = os.getloadavg()[0]
    for v in (True, False):
        r = res[v]
        r["best_s"] = min(r["epochs"])
        r["median_s"] = common.median(r["epochs"])
        r["img_s"] = n / r["median_s"]
        r["img_s_best"] = n / r["best_s"]
        r["cpu_ms_median"] = common.median(r["cpu_ms"])
    res["images"] = n
    return res


def shard_checks(out: Path) -> dict:
    """Seconds for the size check of every tar vs a full sha256 of every tar."""
    from shardforge.layout.reader import check_shards, shard_min_sizes
    from shardforge.stream import open_dataset
    from shardforge.stream.repair import recorded_sizes

    ds = open_dataset(str(out))
    idx = ds.split("train")
    sizes = recorded_sizes(ds, idx)
    need = shard_min_sizes(len(idx.shard_urls), idx.shard, idx.offset, idx.size).tolist()
    t0 = time.perf_counter()
    for _ in range(10):
        check_shards(idx.shard_urls, sizes, need)
    size_s = (time.perf_counter() - t0) / 10
    t0 = time.perf_counter()
    total = 0
    for url in idx.shard_urls:
        h = hashlib.sha256()
        with open(url, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                total += len(chunk)
    return {"tars": len(idx.shard_urls), "bytes": total, "size_check_s": size_s,
            "full_hash_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--work", default="/tmp/shardforge-bench-checksums")
    p.add_argument("--variants", type=int, default=40, help="crops per photo")
    p.add_argument("--max-res", type=int, default=512)
    p.add_argument("--size", type=int, default=224, help="crop output side")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--passes", type=int, default=5, help="single-core passes (best counts)")
    p.add_argument("--out-md", default=None)
    args = p.parse_args(argv)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    out, what = ensure_data(args)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    core = single_core(out, args.size, args.passes)
    runs = loader_epochs(out, args)
    shards = shard_checks(out)
    on, off = runs[True], runs[False]
    pct = (on["img_s"] - off["img_s"]) / off["img_s"] * 100
    cpu_pct = (on["cpu_ms_median"] - off["cpu_ms_median"]) / off["cpu_ms_median"] * 100
    lines = ["## Checksums in the WebDataset loader (bench/checksum_cost.py)", "",
             "Cost of checking each sample's sha256 against `index.parquet` "
             "(`make_loader(verify=True)`, now the default) and of per-shard checks.", "",
             *common.preamble(common.command_line(), PACKAGES),
             f"- Load (`uptime` before the runs): {uptime}; 1-min load after the last "
             f"round: {runs['load']:.2f}",
             f"- Data: {what}; {args.variants} random crops each (long side 400-640 px), "
             f"ingested with `--max-res {args.max_res}`: {core['images']} JPEGs of "
             f"{core['mean_bytes'] / 1e3:.1f} kB on average ({core['min_bytes'] / 1e3:.1f}-"
             f"{core['max_bytes'] / 1e3:.1f} kB), mean long side {core['mean_side']:.0f} px, "
             "in the page cache", "",
             f"**wds loader, checksums on vs off: {on['img_s']:.0f} vs {off['img_s']:.0f} "
             f"img/s ({pct:+.1f}% images/s, {cpu_pct:+.1f}% CPU per image with checksums "
             f"on; single core, a sha256 costs {core['sha256_us'] / core['step_us']:.1%} of "
             "the decode step)** "
             f"(`make_loader(OUT, 'train', {args.batch_size}, num_workers={args.workers}, "
             f"transform=RandomResizedCrop({args.size}), verify=...)`, median of "
             f"{args.repeats} interleaved epochs (order alternating per round) of {runs['images']} images after a warm-up "
             "epoch each; CPU = user + system of the process and its workers)", "",
             *common.md_table(
                 ["verify", "epochs (s)", "median (s)", "images/s (median)", "best (s)",
                  "images/s (best)", "CPU ms / image (median)"],
                 [[str(v), ", ".join(f"{e:.2f}" for e in runs[v]["epochs"]),
                   f"{runs[v]['median_s']:.2f}", f"{runs[v]['img_s']:.0f}",
                   f"{runs[v]['best_s']:.2f}", f"{runs[v]['img_s_best']:.0f}",
                   f"{runs[v]['cpu_ms_median']:.2f}"] for v in (True, False)]), "",
             "End-to-end differences of a few percent either way are run-to-run noise on a "
             "shared machine (the epochs of both settings overlap); the single-core "
             "figures below are the cost itself.", "",
             "Single core, per stored JPEG from memory (best of "
             f"{args.passes} passes; OpenCV 1 thread):", "",
             *common.md_table(
                 ["sha256 (µs)", f"loader decode step, crop {args.size} (µs)",
                  "full decode (µs)", "sha256 / step", "sha256 MB/s"],
                 [[f"{core['sha256_us']:.0f}", f"{core['step_us']:.0f}",
                   f"{core['full_us']:.0f}", f"{core['sha256_us'] / core['step_us']:.1%}",
                   f"{core['sha256_mb_s']:.0f}"]]), "",
             f"Per shard, once at stream start ({shards['tars']} tars, "
             f"{shards['bytes'] / 1e6:.1f} MB): size check (`check_shards`, a `stat` each) "
             f"{shards['size_check_s'] * 1e3:.2f} ms; a full sha256 of every tar "
             f"{shards['full_hash_s'] * 1e3:.0f} ms (page cache; from disk or S3 it is a "
             "full read of the dataset before the first batch).", "",
             "Defaults chosen: per-sample sha256 on (`verify=True`: the bytes of every "
             "sample the trainer sees are the bytes the build hashed, at the cost above), "
             "tar sizes checked at stream start (`check_shards=True`); no whole-tar hash "
             "at open (`shardforge catalog verify` does that, offline)."]
    results = {"data": what, "uptime": uptime, "single_core": core, "shards": shards,
               "loader": {str(k): v for k, v in runs.items()}}
    common.publish("\n".join(lines), args.out_md, SECTION, results, args.work)


if __name__ == "__main__":
    main()
