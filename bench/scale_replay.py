"""How the replay cache's costs grow with the size of a reinforced split (docs/scale.md).

The replay cache (``shardforge.stream.array_cache``, built by
``shardforge.stream.replay.load_reinforced_split``) aligns a reinforced split's stored
augmentations with the parent's positions in memory-mapped ``.npy`` files, once per node.
This script builds it from synthetic reinforcements (``replay_memory.generate``: random
records and top-K in the reinforce job's parquet schema, one file per 1,000 parent
samples as ImageNet's ingest card writes its tars) at 1/100, 1/30 and 1/10 of ImageNet+
(12,812 / 42,706 / 128,117 samples x 400 augmentations x top-10, the
``datasets/imagenet-plus.yaml`` card), one size at a time, generating, measuring and
deleting each in turn:

1. build: a fresh process, empty cache folder: imports, opening the parent index, then the
   ``load_reinforced_split`` call (wall, user and system CPU, the peaks of anonymous and
   file-backed RSS above their values before the call);
   ``--builds`` times, the best time and the largest memory reported;
2. open: ``--opens`` fresh processes each opening the finished cache (the same call, now a
   reuse; the digest over the split's keys timed on its own), the files in the page cache.

Per-item costs are per (sample, augmentation); the report gives them at each size (call
time over items) and marginally (differences between consecutive sizes over the
difference in items), with the spread largest / smallest against the issue's 1.2x, and a
least-squares line ``a + b * items`` through the three sizes extrapolated to ImageNet-1k
(1,281,167) and ImageNet-21k (14,197,122) samples x 400 (a fit, not measured).

    python bench/scale_replay.py --out-md BENCHMARKS.md --doc docs/scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from replay_memory import generate  # noqa: E402

PACKAGES = ("shardforge", "numpy", "pyarrow", "matplotlib")
SECTION = "scale-replay"
IMAGENET = (("ImageNet-1k", 1_281_167), ("ImageNet-21k", 14_197_122))
AUGS, TOP_K, PER_SHARD = 400, 10, 1000      # the imagenet-plus card; imagenet's shard_size
GOAL_FLAT = 1.2
BYTES_PER_ITEM = 130      # disk: 51 B of parquet + 68 B of cache + 1 B of mask, with margin
ARRAYS = ("params", "topk_indices", "topk_probs")


def _status(*names: str) -> dict:
    """Fields of /proc/self/status in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in names:
            out[name] = int(value.split()[0]) * 1024
    return out


class PeakRss:
    """Polls this process's ``RssAnon`` and ``RssFile`` every 10 ms in a thread; the
    maxima (bytes) of each and of their sum while it runs."""

    def __init__(self) -> None:
        import threading

        self.peak = {"RssAnon": 0, "RssFile": 0, "sum": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.01):
            now = _status("RssAnon", "RssFile")
            now["sum"] = now["RssAnon"] + now["RssFile"]
            self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child(work: str, mode: str) -> None:
    """One build or open in this (fresh) process; JSON on stdout (``--child``)."""
    t0 = time.perf_counter()
    import shardforge.augment  # noqa: F401  (the call imports it: torchvision)
    import shardforge.names  # noqa: F401
    import shardforge.stream.array_cache  # noqa: F401
    from shardforge.layout.dataset import open_dataset
    from shardforge.stream.replay import load_reinforced_split, replay_digest

    t1 = time.perf_counter()
    reinforce = json.loads(Path(work, "reinforce.json").read_text())
    parent = open_dataset(work)
    index = parent.split("train")
    rec = {"imports_s": t1 - t0, "index_s": time.perf_counter() - t1,
           "base": _status("VmRSS", "VmHWM", "RssAnon", "RssFile")}
    if mode == "open":
        t = time.perf_counter()
        replay_digest(reinforce, index.key)
        rec["digest_s"] = time.perf_counter() - t
    (u0, s0), t = os.times()[:2], time.perf_counter()
    with PeakRss() as peak:
        stored = load_reinforced_split(work, reinforce, parent,
                                       cache_dir=str(Path(work, "cache")))
    rec["call_s"], (u1, s1) = time.perf_counter() - t, os.times()[:2]
    rec.update(user_s=u1 - u0, sys_s=s1 - s0, peak=peak.peak, folder=stored.cache,
               end=_status("VmRSS", "VmHWM", "RssAnon", "RssFile"),
               shape=list(stored.topk_probs.shape), record_bytes=stored.params.itemsize)
    print(json.dumps(rec), flush=True)


def run_child(work: Path, mode: str) -> dict:
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(work)],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{mode} child failed in {work}:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]), load=load)


def du(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (sparse holes not counted)."""
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def measure(args, samples: int) -> dict:
    """Generate one size, build and open its cache, delete it all; the measurements."""
    work = Path(args.work) / f"n{samples}"
    need, free = samples * AUGS * BYTES_PER_ITEM, shutil.disk_usage(args.work).free
    if not (work / "reinforce.json").exists() and free < need:
        sys.exit(f"--work {args.work}: {free / 2**30:.1f} GiB free, {samples:,} samples need "
                 f"about {need / 2**30:.1f} GiB (records + cache); pass a --work on a larger "
                 "disk or smaller --samples")
    t = time.perf_counter()          # generate() reuses a complete set kept by --keep
    reinforce = generate(str(work), samples, AUGS, TOP_K, -(-samples // PER_SHARD))
    gen_s = time.perf_counter() - t
    builds = []
    for _ in range(args.builds):                 # each into an empty cache folder
        shutil.rmtree(work / "cache", ignore_errors=True)
        builds.append(run_child(work, "build"))
    build = best(builds)
    folder = Path(build["folder"])
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    opens = [run_child(work, "open") for _ in range(args.opens)]
    rec = {"samples": samples, "items": samples * AUGS, "shards": len(reinforce["files"]),
           "generate_s": gen_s, "input_bytes": sum(f["size"] for f in reinforce["files"]),
           "cache_bytes": sum(files[f"{a}.npy"] for a in ARRAYS), "cache_files": files,
           "cache_disk": du(folder), "build": build, "builds": builds, "opens": opens}
    if not args.keep:
        shutil.rmtree(work)
    print(f"{samples:,} samples: build {build['call_s']:.1f} s, open "
          f"{statistics.median(o['call_s'] for o in opens):.3f} s", file=sys.stderr)
    return rec


def best(builds: list[dict]) -> dict:
    """The builds' times at their minimum, their memory above the start at its maximum."""
    def above(b: dict, key: str) -> int:
        base = b["base"]["RssAnon"] + b["base"]["RssFile"] if key == "sum" else b["base"][key]
        return b["peak"][key] - base
    out = {k: min(b[k] for b in builds) for k in ("call_s", "user_s", "sys_s")}
    out.update({f"{k}_above": max(above(b, k) for b in builds) for k in ("RssAnon", "RssFile",
                                                                           "sum")},
               base_rss=statistics.median(b["base"]["VmRSS"] for b in builds),
               all_s=[b["call_s"] for b in builds], loads=[b["load"] for b in builds],
               folder=builds[-1]["folder"])
    return out


# ------------------------------------------------------------------ report
def per_item(runs: list[dict]) -> dict[str, list[float]]:
    """Per-run totals of every cost the report divides by items."""
    def med(r, key):
        return statistics.median(o[key] for o in r["opens"])
    return {
        "build wall (ns/item)": [r["build"]["call_s"] * 1e9 for r in runs],
        "build user CPU": [r["build"]["user_s"] * 1e9 for r in runs],
        "build system CPU": [r["build"]["sys_s"] * 1e9 for r in runs],
        "peak anon RSS above before (B/item)": [r["build"]["RssAnon_above"] for r in runs],
        "peak file RSS above before (B/item)": [r["build"]["RssFile_above"] for r in runs],
        "cache on disk (B/item)": [r["cache_bytes"] for r in runs],
        "input parquet (B/item)": [r["input_bytes"] for r in runs],
        "open, reuse (ns/item)": [med(r, "call_s") * 1e9 for r in runs],
        "of which key digest": [med(r, "digest_s") * 1e9 for r in runs]}


def spread(costs: list[float]) -> str:
    lo, hi = min(costs), max(costs)
    ratio = hi / lo if lo > 0 else float("inf")
    return f"{ratio:.2f}x ({'within' if ratio <= GOAL_FLAT else 'misses'} {GOAL_FLAT}x)"


def fit(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares (b, a) of ``a + b * x``."""
    import numpy as np

    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(b), float(a)


def render(res: dict, doc: Path | None) -> list[str]:
    runs = res["runs"]
    items = [r["items"] for r in runs]
    gib, mib = 2**-30, 2**-20
    rows = [[f"{r['samples']:,} x {AUGS} = {r['items']:,}", r["shards"],
             " / ".join(f"{x:.1f}" for x in r["build"]["all_s"]),
             f"{r['build']['user_s']:.1f} / {r['build']['sys_s']:.1f}",
             f"{r['build']['base_rss'] * mib:,.0f}",
             f"{r['build']['RssAnon_above'] * mib:,.0f} / {r['build']['RssFile_above'] * mib:,.0f}",
             f"{r['cache_bytes'] * mib:,.0f}", f"{r['cache_disk'] * mib:,.0f}",
             f"{r['input_bytes'] * mib:,.0f}",
             " / ".join(f"{o['call_s']:.3f}" for o in r["opens"]),
             f"{statistics.median(o['digest_s'] for o in r['opens']):.3f}",
             "-".join(f"{x:.1f}" for x in (min(r["build"]["loads"]), max(r["build"]["loads"])))]
            for r in runs]
    series = per_item(runs)
    at = {h: [v / n for v, n in zip(ys, items, strict=True)] for h, ys in series.items()}
    marg = {h: [(ys[i + 1] - ys[i]) / (items[i + 1] - items[i]) for i in range(len(ys) - 1)]
            for h, ys in series.items()}
    out = ["### Replay cache against the reinforced split's size", "",
           f"Synthetic reinforcements ({AUGS} augmentations x top-{TOP_K} per sample, one "
           f"parquet per {PER_SHARD:,} samples); per size {res['builds']} fresh processes each "
           f"build the cache into an empty folder, then {res['opens']} fresh processes open it "
           "(a reuse: the files in the page cache). Times are of the `load_reinforced_split` "
           "call, the builds' best (per-item costs use it); memory: the builds' largest peak "
           "of the process's anonymous and file-backed RSS (polled every 10 ms) above its value "
           "before the call; \"before\" is "
           "the process's RSS after its imports (those the call makes too, torchvision "
           "among them, done first) and opening the parent index.", "",
           *common.md_table(["samples x augmentations = items", "shards", "build, each (s)",
                             "build user / system CPU, best (s)", "RSS before (MiB)",
                             "peak above before: anon / file RSS (MiB)",
                             "cache arrays (MiB)", "cache on disk (MiB)", "input parquet (MiB)",
                             "open, reuse (s, each process)", "key digest (s)", "1-min load"],
                            rows), "",
           "Per item (per sample-augmentation), at each size and marginally between sizes:", "",
           *common.md_table(["", *[f"{n:,} items" for n in items],
                             *[f"{items[i]:,} -> {items[i + 1]:,}" for i in range(len(items) - 1)],
                             "largest / smallest, per item at each size",
                             "largest / smallest, marginal"],
                            [[h, *[f"{c:.3g}" for c in at[h]], *[f"{c:.3g}" for c in marg[h]],
                              spread(at[h]), spread(marg[h])] for h in series]), "",
           "Extrapolation: a least-squares line a + b * items through the three sizes (a fit, "
           f"not measured), at {AUGS} augmentations per sample:", ""]
    ext = []
    for what, key, scale, fmt in (("build wall (min)", "build wall (ns/item)", 1e-9 / 60, ".1f"),
                                  ("build CPU, user + system (min)", None, 1e-9 / 60, ".1f"),
                                  ("build peak anon RSS above before (GiB)",
                                   "peak anon RSS above before (B/item)", gib, ".2f"),
                                  ("build peak file RSS above before (GiB)",
                                   "peak file RSS above before (B/item)", gib, ".2f"),
                                  ("cache on disk (GiB)", "cache on disk (B/item)", gib, ".1f"),
                                  ("input parquet (GiB)", "input parquet (B/item)", gib, ".1f"),
                                  ("open, reuse (s)", "open, reuse (ns/item)", 1e-9, ".2f")):
        ys = ([u + s for u, s in zip(series["build user CPU"], series["build system CPU"],
                                     strict=True)] if key is None else series[key])
        b, a = fit(items, ys)
        ext.append([what, *[format((a + b * n * AUGS) * scale, fmt) for _, n in IMAGENET],
                    f"{b:.3g} per item + {a * scale:{fmt}}"])
    out += [*common.md_table(["", *[f"{name} ({n:,} x {AUGS})" for name, n in IMAGENET],
                              "fit"], ext), ""]
    if doc:
        from scale import plot

        plot(doc.parent / "scale-replay.png", [
            ("replay cache build, per item", "items (sample x augmentation)", "ns per item",
             {h: (items, at[h]) for h in ("build wall (ns/item)", "build user CPU",
                                          "build system CPU")}, None),
            ("replay cache size and build memory, per item", "items", "bytes per item",
             {h: (items, at[h]) for h in ("cache on disk (B/item)", "input parquet (B/item)",
                                          "peak anon RSS above before (B/item)",
                                          "peak file RSS above before (B/item)")}, None)])
        out += ["![replay cache build time, size and memory per item](docs/scale-replay.png)", ""]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", default="12812,42706,128117",
                   help="comma-separated sample counts (default: 1/100, 1/30, 1/10 of ImageNet)")
    p.add_argument("--builds", type=int, default=2, help="fresh builds per size (best taken)")
    p.add_argument("--opens", type=int, default=3, help="fresh processes opening each cache")
    p.add_argument("--work", default="/tmp/sf-scale-replay",
                   help="generated data and caches (deleted per size unless --keep)")
    p.add_argument("--keep", action="store_true",
                   help="keep each size's data and cache (a later run reuses the data)")
    p.add_argument("--out-md", help="write the results into this markdown file's section")
    p.add_argument("--doc", help="also write the section (and its plot) into this page")
    p.add_argument("--child", nargs=2, metavar=("MODE", "WORK"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child[1], args.child[0])
        return 0
    if len(args.samples.split(",")) < 2:
        p.error("--samples: give at least two sizes (costs are compared between sizes)")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    wall = time.perf_counter()
    res = {"uptime": uptime, "opens": args.opens, "builds": args.builds,
           "runs": [measure(args, int(n)) for n in args.samples.split(",")]}
    res.update(wall_s=time.perf_counter() - wall, load_end=os.getloadavg())
    Path(args.work, "results.json").write_text(json.dumps(res, indent=1))   # kept if render fails
    doc = Path(args.doc) if args.doc else None
    lines = ["## Scale: replay cache build against the reinforced split's size", "",
             "Write-up: [docs/scale.md](docs/scale.md).", "",
             *common.preamble(common.command_line(), PACKAGES),
             f"- Load: `{uptime}` at the start, 1-min load average {res['load_end'][0]:.1f} at "
             f"the end ({res['wall_s'] / 60:.0f} min later, of which data generation "
             f"{sum(r['generate_s'] for r in res['runs']):.0f} s: none where a --keep run "
             "left the data); 2 CPUs "
             "shared with other jobs, so wall times are noisy, CPU times less so", "",
             *render(res, doc)]
    common.publish_scale(lines, args.out_md, SECTION, res, args.work, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
