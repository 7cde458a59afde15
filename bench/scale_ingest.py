"""How ingest costs grow with the number of images: 1k, 10k, 100k small natural photos
through ``shardforge ingest`` (a whole process, Ray head already up), and optionally larger
trees made of hard links to the largest corpus's photos (``--linked-sizes``).

    python bench/scale_ingest.py --sizes 1000,10000,100000 --linked-sizes 300000,1281167 \
        --out-md BENCHMARKS.md

Per size: seconds per 1k images by stage (the build's own ``stage_seconds``: plan,
shards, merge, index; "other" = the rest of the process: start-up, Ray connect,
summary, exit), CPU milliseconds per image (every process, the Ray head's workers
included) and the driver's peak RSS. The goal (issue #16) is per-image costs flat
within 1.2x from the smallest to the largest size and a driver RSS that stays far
below 1 GB at ImageNet's 1.28M samples: measured when ``--linked-sizes`` reaches
1,281,167; the table also extrapolates the driver's RSS linearly from the two largest
generated sizes (a fit, not a measurement), so the fit can be checked against it.

A linked tree has the generated corpus's layout and names (image ``i`` is a hard link
to photo ``i mod N`` of the N-image corpus): the same photos, so per-image work is
comparable, and no disk space or generation time for the copies. Each link is a
distinct path (its own key and sample); links share their photo's inode, which only
the source stamps see. The tree is deleted at the end unless ``--keep-linked``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import photos  # noqa: E402
from ingest_cli import TreeCPU, start_head, stop_head  # noqa: E402

PACKAGES = ("shardforge", "ray", "pyarrow", "opencv-python-headless", "pillow", "numpy")
SECTION = "scale-ingest"
IMAGENET = 1_281_167


def _peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    """Poll ``pid``'s RSS every 20 ms until ``stop``; the maximum goes to ``out[0]``."""
    import psutil

    try:
        proc = psutil.Process(pid)
        while not stop.is_set():
            out[0] = max(out[0], proc.memory_info().rss)
            time.sleep(0.02)
    except psutil.Error:
        pass


def run_one(root: Path, out: Path, address: str, env: dict, head_pid: int, res: int) -> dict:
    """One CLI ingest: wall, CPU (all processes), driver peak RSS, the summary's stages."""
    import resource

    if out.exists():
        shutil.rmtree(out)
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree = TreeCPU([head_pid])
    tree.start()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "shardforge.cli", "ingest", str(root),
                             "--name", "scale", "--out", str(out), "--max-res", str(res),
                             "--no-register", "--ray-address", address, "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, stop = [0], threading.Event()
    watcher = threading.Thread(target=_peak_rss, args=(proc.pid, stop, peak), daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(f"ingest exited {proc.returncode}:\n{stderr[-2000:]}")
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
           + tree.stop())
    summary = json.loads(stdout)
    return {"wall": wall, "cpu": cpu, "rss": peak[0], "load": load,
            "stages": summary["stage_seconds"], "in_job": summary["seconds"],
            "samples": summary["samples"], "shards": sum(
                s["shards"] for s in summary["splits"].values())}


def linked_tree(base: photos.PhotoCorpus, base_root: Path, images: int, work: Path) -> Path:
    """A class-folder tree of ``images`` hard links to the photos of ``base`` (image ``i``
    -> photo ``i mod base.images``), named as a ``base`` corpus of that size would be."""
    spec = dataclasses.replace(base, images=images)
    root = Path(work) / "data" / f"linked-{spec.tag}"
    marker = root.parent / f"{root.name}.done"
    if marker.exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    sources = [p for p, _ in base.files(base_root)]
    t0 = time.perf_counter()
    for c in range(spec.classes):
        (root / f"c{c:03d}").mkdir(parents=True)
    for i, (path, _) in enumerate(spec.files(root)):
        os.link(sources[i % len(sources)], path)
    print(f"linked {images:,} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    marker.write_text("")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--linked-sizes", default="",
                   help="larger sizes made of hard links to the largest --sizes corpus")
    p.add_argument("--keep-linked", action="store_true", help="keep the linked trees")
    p.add_argument("--res", type=int, default=64, help="--max-res of the ingest")
    p.add_argument("--min-side", type=int, default=64)
    p.add_argument("--max-side", type=int, default=96)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--work", default="/tmp/sf-bench")
    p.add_argument("--out-md")
    args = p.parse_args(argv)
    generated = [int(s) for s in args.sizes.split(",")]
    linked = [int(s) for s in args.linked_sizes.split(",") if s]
    sizes = generated + linked
    wall0 = time.perf_counter()
    corpora, stats = {}, {}
    for n in generated:
        spec = photos.PhotoCorpus(images=n, min_side=args.min_side, max_side=args.max_side)
        root, _, st = photos.ensure_corpus(spec, Path(args.work), args.workers)
        st.pop("long_sides")
        corpora[n], stats[n] = root, st
    for n in linked:
        corpora[n] = linked_tree(spec, corpora[generated[-1]], n, Path(args.work))
    head, address, env = start_head(args.workers)
    results: dict = {"sizes": {}, "corpus": stats, "generated": generated, "linked": linked}
    try:
        for _ in range(args.repeats):
            for n in sizes:
                r = run_one(corpora[n], Path(args.work) / "runs" / "scale", address, env,
                            head.pid, args.res)
                if r["samples"] != n:
                    raise RuntimeError(f"{r['samples']} samples written, expected {n}")
                results["sizes"].setdefault(str(n), []).append(r)
                print(f"{n}: {r['wall']:.1f} s, {1e3 * r['cpu'] / n:.2f} CPU ms/img, "
                      f"RSS {r['rss'] / 2**20:.0f} MiB, stages {r['stages']}", file=sys.stderr)
    finally:
        stop_head(head)
        if not args.keep_linked:
            for n in linked:
                shutil.rmtree(corpora[n])
                Path(f"{corpora[n]}.done").unlink()
    results["total_wall_s"] = time.perf_counter() - wall0
    Path(args.work, "results-scale-ingest.json").write_text(json.dumps(results, indent=1))
    common.publish(render(args, results), args.out_md, SECTION)
    return 0


def render(args, results: dict) -> str:
    """The BENCHMARKS.md section."""
    sizes = sorted(int(n) for n in results["sizes"])
    generated = sorted(results.get("generated", sizes))
    linked = set(results.get("linked", []))
    best = {n: min(results["sizes"][str(n)], key=lambda r: r["wall"]) for n in sizes}
    st = results["corpus"][generated[-1]]
    stages = ("plan", "shards", "merge", "index")
    rows = []
    for n in sizes:
        r = best[n]
        other = r["wall"] - sum(r["stages"].get(s, 0.0) for s in stages)
        rows.append([f"{n:,}" + (" (links)" if n in linked else ""), r["shards"],
                     f"{r['wall']:.2f}",
                     *(f"{1e3 * r['stages'].get(s, 0.0) / n:.3f}" for s in stages),
                     f"{1e3 * other / n:.3f}", f"{1e3 * r['cpu'] / n:.2f}",
                     f"{r['rss'] / 2**20:.0f}"])

    def fit(n0: int, n1: int, at: int) -> tuple[float, float]:
        """Slope (bytes per image) between sizes n0 and n1, RSS extrapolated to ``at``."""
        slope = (best[n1]["rss"] - best[n0]["rss"]) / (n1 - n0)
        return slope, best[n1]["rss"] + slope * (at - n1)

    slope_gen, fitted = fit(generated[-2], generated[-1], IMAGENET)
    slope_top, at_21k = fit(sizes[-2], sizes[-1], 14_197_122)
    b = best[sizes[-1]]
    shards = (b["stages"]["shards"] / sizes[-1]) / (best[sizes[0]]["stages"]["shards"]
                                                   / sizes[0])
    cpu = (b["cpu"] / sizes[-1]) / (best[sizes[0]]["cpu"] / sizes[0])
    measured = [n for n in sizes if n >= IMAGENET]
    rss_lines = [
        f"- Driver peak RSS grows {slope_gen * 1000 / 2**20:.2f} MiB per 1k images between "
        f"{generated[-2]:,} and {generated[-1]:,} images; linear extrapolation from them (a "
        f"fit, not measured): {fitted / 2**20:.0f} MiB at ImageNet-1k's {IMAGENET:,} images "
        "(goal: <= 1 GB at 1.28M)."]
    if measured:
        rss_lines.append(
            f"- Measured at {measured[0]:,} images (a tree of hard links, see "
            f"`bench/scale_ingest.py`): driver peak RSS {best[measured[0]]['rss'] / 2**20:.0f}"
            " MiB.")
    if sizes[-1] > generated[-1]:
        rss_lines.append(
            f"- Between the two largest sizes ({sizes[-2]:,} and {sizes[-1]:,}) the peak "
            f"grows {slope_top * 1000 / 2**20:.2f} MiB per 1k images; linear extrapolation "
            f"(a fit): {at_21k / 2**30:.1f} GiB at ImageNet-21k's 14.2M.")
    else:
        rss_lines.append(f"- The same fit gives {at_21k / 2**30:.1f} GiB at ImageNet-21k's "
                         "14.2M.")
    top = f"{sizes[-1] / 1e6:.2f}M" if sizes[-1] >= 1_000_000 else f"{sizes[-1] // 1000:,}k"
    lines = [f"## Ingest cost growth (1k -> {top} images)", "",
             *common.preamble(common.command_line(), PACKAGES),
             f"- Corpus: small natural photos (`bench/photos.py`, sides {st['min_side']}-"
             f"{st['max_side']} px, {st['mean_kb']:.1f} KiB), ingested at --max-res "
             f"{args.res}; a private {args.workers}-CPU Ray head up before timing; one "
             "whole `shardforge ingest` process per size; 1-min load average "
             f"{min(r['load'] for r in best.values()):.1f}-"
             f"{max(r['load'] for r in best.values()):.1f}"
             + (f"; sizes marked (links) are hard links to the {generated[-1]:,} photos"
                if linked else ""), "",
             *common.md_table(["images", "shards", "process wall (s)",
                               *(f"{s} (s / 1k)" for s in stages), "other (s / 1k)",
                               "CPU ms / image", "driver peak RSS (MiB)"], rows), "",
             f"- Per image, largest / smallest size: shard building {shards:.2f}x, CPU "
             f"{cpu:.2f}x (goal: within 1.2x). 'other' is the fixed cost (interpreter, "
             "imports, Ray connect, exit) spread over the images.",
             *rss_lines,
             f"- Whole benchmark wall time: {results['total_wall_s']:.0f} s."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
