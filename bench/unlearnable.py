"""CUDA generation throughput vs its limit, the decode + encode of the same shards alone.

    python bench/unlearnable.py --images 2000 --workers 2 --out-md BENCHMARKS.md

On seeded demo images ingested at each ``--res`` (JPEG q90 shards; cached in ``--work``),
it times, on one Ray started before timing, with ``--workers`` CPUs:

* ``cuda``: ``run_variant`` with the CUDA variant (p = 1: every train image decoded,
  convolved with its class filter, normalised, stored losslessly in both formats; the
  per-resolution defaults: k=3, pb=0.3 at <= 128 px, k=9, pb=0.06 above);
* ``decode+encode``: the same job with p = 0, so every image is decoded and re-encoded
  through the same engine with no filter: the limit a CUDA job can approach.

plus single-core per-image rates of each step (JPEG decode, the CUDA transform, PNG
encode). Methods alternate in ``--repeats`` rounds (the machine may be shared); the best
run counts. Results go to the ``unlearnable`` section of ``--out-md``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PACKAGES = ("shardforge", "ray", "numpy", "opencv-python-headless", "pillow")
SECTION = "unlearnable"
KEY = "bench-unlearnable-key-not-secret"      # a benchmark needs no secret


def ensure_parent(work: Path, images: int, res: int, seed: int) -> tuple[str, dict]:
    """Demo images (train only) ingested at ``res`` px; cached. (dataset dir, stats)."""
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.formats.image import ImageParams
    from shardforge.sources.demo import DemoSpec, generate_demo_data

    spec = DemoSpec(num_classes=10, train_per_class=-(-images // 10), val_per_class=0,
                    seed=seed)
    src = work / f"src-n{images}-seed{seed}"
    if not (src / ".done").exists():
        generate_demo_data(src, spec)
        (src / ".done").write_text("ok")
    out = work / f"parent-n{images}-seed{seed}-r{res}"
    summary = run_ingest(IngestConfig(source=str(src), name="parent", out=str(out),
                                      image=ImageParams(max_resolution=res)),
                         log=io.StringIO())
    return str(out), summary


def _timed_variant(parent: str, out: Path, p: float) -> float:
    from shardforge.catalog.variant import run_variant
    from shardforge.variants.cuda.spec import make_variant, secrets_of

    shutil.rmtree(out, ignore_errors=True)
    variant = make_variant({"p": p}, secrets_of(KEY))
    t0 = time.perf_counter()
    run_variant(parent, variant, "bench", str(out), register=False, log=io.StringIO())
    return time.perf_counter() - t0


def _parent_jpegs(parent: str, limit: int) -> list[tuple[int, bytes]]:
    found = []
    for tar_path in sorted(Path(parent, "wds").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name, m in members.items():
                if name.endswith(".jpg"):
                    label = int(tar.extractfile(members[name[:-4] + ".cls"]).read())
                    found.append((label, tar.extractfile(m).read()))
                    if len(found) >= limit:
                        return found
    return found


def step_rates(parent: str, sample: int) -> dict:
    """Single-core images/s of JPEG decode, the CUDA transform and PNG encode."""
    import cv2
    import numpy as np

    from shardforge.formats.image import decode_rgb
    from shardforge.formats.wds import png_bytes
    from shardforge.variants.cuda.transform import CudaTransform

    blobs = _parent_jpegs(parent, sample)
    pixels = [(label, decode_rgb(b)[0]) for label, b in blobs]
    transform = CudaTransform(KEY)
    filters = [transform.filter_for(label, px.shape[0], px.shape[1]) for label, px in pixels]

    def rate(fn, items) -> float:
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            for item in items:
                fn(item)
            best = max(best, len(items) / (time.perf_counter() - t0))
        return best

    from shardforge.variants.cuda.transform import Scratch, apply_cuda

    scratch = Scratch()     # as CudaTransform does: work arrays reused from image to image
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return {"decode": rate(lambda b: decode_rgb(b[1]), blobs),
                "cuda": rate(lambda i: apply_cuda(pixels[i][1], filters[i], scratch=scratch),
                             list(range(len(pixels)))),
                "png_encode": rate(lambda lp: png_bytes(np.ascontiguousarray(lp[1])), pixels),
                "mean_side": float(np.mean([max(px.shape[:2]) for _, px in pixels])),
                "kernel": int(filters[0].shape[0])}
    finally:
        cv2.setNumThreads(threads)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000, help="train images (demo generator)")
    p.add_argument("--res", type=int, nargs="+", default=[64, 256],
                   help="parent max resolutions (default: 64 256)")
    p.add_argument("--workers", type=int, default=2, help="Ray CPUs")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (best counts)")
    p.add_argument("--sample", type=int, default=200, help="images for per-step rates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="/tmp/sf-bench-unlearnable")
    p.add_argument("--out-md", default=None, help="write the section into this markdown file")
    args = p.parse_args(argv)

    import ray

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"args": vars(args), "res": {}, "load_before": os.getloadavg()[1]}
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False,
             _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        for res in args.res:
            parent, summary = ensure_parent(work, args.images, res, args.seed)
            n = summary["splits"]["train"]["samples"]
            entry = {"images": n, "cuda_s": [], "copy_s": [], "steps": step_rates(parent,
                                                                                 args.sample)}
            _timed_variant(parent, work / "warm", 1.0)      # workers warm, imports done
            for _ in range(args.repeats):
                entry["copy_s"].append(_timed_variant(parent, work / "copy", 0.0))
                entry["cuda_s"].append(_timed_variant(parent, work / "cuda", 1.0))
            entry["cuda_ips"] = n / common.best(entry["cuda_s"])
            entry["copy_ips"] = n / common.best(entry["copy_s"])
            entry["ratio"] = entry["cuda_ips"] / entry["copy_ips"]
            results["res"][res] = entry
            print(f"{res} px: cuda {entry['cuda_ips']:.0f} img/s, decode+encode "
                  f"{entry['copy_ips']:.0f} img/s, ratio {entry['ratio']:.2f}", file=sys.stderr)
    finally:
        ray.shutdown()
    results["load_after"] = os.getloadavg()[1]
    (work / "results-unlearnable.json").write_text(json.dumps(results, indent=1))
    common.publish(render(results, common.command_line()), args.out_md, SECTION)
    return 0


def render(results: dict, command: str) -> str:
    args = results["args"]
    lines = ["## CUDA unlearnable generation (`pipelines/unlearnable.py`)", "",
             *common.preamble(command, PACKAGES),
             f"- Data: {args['images']} seeded demo train images (10 classes), ingested as "
             "JPEG q90 shards at each max resolution; outputs lossless (raw .beton, PNG tar). "
             f"{args['workers']} Ray CPUs, best of {args['repeats']} interleaved rounds.",
             "- `decode+encode` is the same job at p = 0 (decode, no filter, lossless encode, "
             "both formats, index, commit): the limit for CUDA generation. Goal: ratio >= 0.8.",
             f"- Machine load (5-min load average) before / after: "
             f"{results['load_before']:.1f} / {results['load_after']:.1f} (other jobs share "
             "the CPUs when it exceeds the CPU count: the ratios are then noisy, a ratio above 1 "
             "is noise).",
             ""]
    rows = []
    for res, e in results["res"].items():
        rows.append([f"{res} px (k={e['steps']['kernel']})", e["images"],
                     f"{e['cuda_ips']:.0f}", f"{e['copy_ips']:.0f}", f"{e['ratio']:.2f}"])
    lines += common.md_table(["parent", "images", "CUDA img/s", "decode+encode img/s",
                              "ratio"], rows)
    lines += ["", "Single-core per-image rates (img/s) of the steps:", ""]
    rows = [[f"{res} px (mean longest side {e['steps']['mean_side']:.0f})",
             f"{e['steps']['decode']:.0f}", f"{e['steps']['cuda']:.0f}",
             f"{e['steps']['png_encode']:.0f}"] for res, e in results["res"].items()]
    lines += common.md_table(["parent", "JPEG decode", "CUDA transform (k x k filter)",
                              "PNG encode"], rows)
    lines += ["", "The transform is exact (byte-identical on every CPU): a 3 x 3 filter "
              "is one float64 OpenCV filter2D pass (uint8 in), negligible next to decode + "
              "encode at 64 px; a 9 x 9 filter is one SIMD float32 filter2D pass (k^2 "
              "multiply-adds per pixel and channel) whose proven error bound decides all but "
              "~0.1% of the pixels, those computed exactly in integers (an image with too "
              "many undecided pixels takes the exact path, three float32 passes on split "
              "integer weights: ~2x the time). `src/shardforge/variants/cuda/transform.py` "
              "(`apply_cuda`) has the argument."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
