"""How per-item costs grow with the size of the work (docs/scale.md).

1. Loader start-up against index rows (10k, 100k, 1.28M, 14M): time from process start to
   ``make_loader`` returning and to the first batch (2 workers, batch 256,
   ``RandomResizedCrop(32)``, sha256 checked), a fresh process per size, mode and round;
   memory of the driver and its workers after it. Three modes: the node's index cache
   (stream/index_cache.py) emptied first ("cold": the first loader on a node builds it),
   left by that run ("warm": every later loader of the node), and not used
   (``index_cache=False``: each loader reads the index into its own memory). Data:
   synthetic indexes of N rows (unique keys and digests) over 1,000-sample tars, hard
   links of one real ingested tar.
2. Catalog ``list``/``show``/``resolve``/``verify`` against 10, 100, 1,000 builds of 1,000
   file records, registered through ``register_build``; as CLI processes and in-process.

Per-item costs are marginal: differences between consecutive sizes over the difference in
rows (builds), so fixed costs (interpreter, imports) cancel.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PACKAGES = ("shardforge", "torch", "pyarrow", "numpy", "matplotlib")
SECTION = "scale"
ROWS_PER_TAR = 1000        # what ingest's default shard size gives a large split
CHECKED_ROWS = 16 * 256    # rows first in epoch 0's order: they keep their true sha256
IMAGENET = (("ImageNet-1k", 1_281_167), ("ImageNet-21k", 14_197_122))
GOAL_S, GOAL_FLAT = 2.0, 1.2
PER_ROW = (("make_loader wall (µs/row)", "make", 1e6), ("user CPU", "user", 1e6), ("system CPU",
           "sys", 1e6), ("first batch after", "batch_s", 1e6), ("rank anon PSS (B/row)",
           "rank_anon", 1), ("driver RSS", "driver_rss", 1), ("worker USS", "worker_uss", 1),
           ("page faults of the call (per row)", "minflt", 1))


# ------------------------------------------------------------------ loader
def template(work: Path) -> Path:
    """A real ingest of ROWS_PER_TAR tiny JPEGs (10 classes) into one tar."""
    out = work / "template"
    if not (out / "summary.json").exists():
        import cv2
        import numpy as np

        rng = np.random.default_rng(0)
        for i in range(ROWS_PER_TAR):
            cls = work / "template-src" / "train" / f"n{i % 10:08d}"
            cls.mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 255, (40 + i % 17, 48 + i % 13, 3), dtype=np.uint8)
            cv2.imwrite(str(cls / f"{cls.name}_{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        subprocess.run([sys.executable, "-m", "shardforge.cli", "ingest", str(cls.parent.parent),
                        "--name", "tpl", "--out", str(out), "--no-register", "--max-res", "32",
                        "--shard-size", str(ROWS_PER_TAR)], check=True, stdout=subprocess.DEVNULL)
    return out


def synth_dataset(work: Path, rows: int) -> Path:
    """``rows`` rows in tars of ROWS_PER_TAR (hard links of the template's): row r of tar k is
    template sample r keyed ``KEY-k``, its sha256 random unless among the CHECKED_ROWS; every
    column ingest writes, one row group per tar as ingest writes; summary.json to match."""
    out = work / f"ds-{rows}"
    if (out / "summary.json").exists():
        return out
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from shardforge.stream.partition import epoch_order

    tpl = template(work)
    tsum, tindex = json.loads((tpl / "summary.json").read_text()), pq.read_table(
        tpl / "index.parquet")
    names = [f"syn-train-{k:06d}.tar" for k in range(-(-rows // ROWS_PER_TAR))]
    (out / "wds").mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (out / "wds" / name).exists():
            os.link(tpl / "wds" / "tpl-train-000000.tar", out / "wds" / name)
    rng = np.random.default_rng(rows)
    label, checked = rng.integers(0, 1000, rows), np.zeros(rows, bool)
    checked[epoch_order(rows, 0, 0, "global")[:CHECKED_ROWS]] = True
    hexdigits, writer = np.frombuffer(b"0123456789abcdef", np.uint8), None
    for lo in range(0, rows, 1024 * ROWS_PER_TAR):
        pos = np.arange(lo, min(rows, lo + 1024 * ROWS_PER_TAR))
        tk, mask = tindex.take(pa.array(pos % ROWS_PER_TAR)), pa.array(checked[pos])
        keys = pc.binary_join_element_wise(
            tk["key"], pa.array([f"{k:06d}" for k in pos // ROWS_PER_TAR]), "-")
        digits = hexdigits[rng.integers(0, 16, len(pos) * 64, dtype=np.uint8)]
        sha = pa.StringArray.from_buffers(len(pos), pa.py_buffer(np.arange(
            0, 64 * (len(pos) + 1), 64, dtype=np.int32)), pa.py_buffer(digits))
        cols = {"key": keys, "label": pa.array(label[pos]), "split": pa.array(
            ["train"] * len(pos)), "shard": pa.array([names[k] for k in pos // ROWS_PER_TAR])}
        cols.update({c: tk[c] for c in ("offset", "size", "format", "width", "height",
                                        "orig_width", "orig_height")})
        cols.update(sha256=pc.replace_with_mask(sha, mask, tk["sha256"].combine_chunks()
                                                .filter(mask)),
                    origin=pc.binary_join_element_wise("train/", keys, ".JPEG", ""),
                    beton_index=pa.array(pos))
        table = pa.table(cols).cast(tindex.schema)
        writer = writer or pq.ParquetWriter(out / "index.parquet", table.schema)
        writer.write_table(table, row_group_size=ROWS_PER_TAR)
    writer.close()
    rec, h = tsum["formats"]["wds"]["train"][0], hashlib.sha256()
    with open(out / "index.parquet", "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    summary = dict(tsum, name="syn", out=str(out), samples=rows, source="synthetic",
                   classes=[f"n{c:08d}" for c in range(1000)], splits={"train": {
                       "per_class": dict(enumerate(np.bincount(label).tolist())), "rejects": 0,
                       "samples": rows, "shards": len(names)}}, formats={"wds": {"train": [
                           {"path": f"wds/{n}", "sha256": rec["sha256"], "size": rec["size"],
                            "samples": min(ROWS_PER_TAR, rows - k * ROWS_PER_TAR), "url": str(
                                out / "wds" / n)} for k, n in enumerate(names)]}},
                   shard_pattern="syn-{split}-{index:06d}.tar", index={
                       "path": "index.parquet", "url": str(out / "index.parquet"), "sha256":
                       h.hexdigest(), "size": (out / "index.parquet").stat().st_size})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return out


def smaps(pid: int) -> dict:
    """Bytes (smaps_rollup); pss_anon leaves out libraries, whose PSS other tenants share."""
    f = {k: int(v.split()[0]) * 1024 for k, v in (ln.split(":", 1) for ln in Path(
        f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])}
    return {"rss": f["Rss"], "pss": f["Pss"], "pss_anon": f["Pss_Anon"],
            "uss": f["Private_Clean"] + f["Private_Dirty"]}


MODES = ("cold", "warm", "off")


def child_loader(ds: str, mode: str) -> None:
    """One start-up, in a fresh process (``--child-loader DS --mode MODE``); JSON on stdout."""
    t = {"start": time.time()}
    import psutil

    from shardforge.formats.decode import RandomResizedCrop
    from shardforge.stream.wds_loader import make_loader

    t["imported"], (u0, s0) = time.time(), os.times()[:2]
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    loader = make_loader(ds, "train", 256, num_workers=2, transform=RandomResizedCrop(32),
                         index_cache=mode != "off")
    t["made"], (u1, s1) = time.time(), os.times()[:2]
    minflt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    images, _labels = next(iter(loader))
    t["first"] = time.time()
    driver, workers = smaps(os.getpid()), [smaps(w.pid) for w in psutil.Process().children()]
    print(json.dumps({**t, "make": t["made"] - t["imported"], "batch_s": t["first"] - t["made"],
                      "user": u1 - u0, "sys": s1 - s0, "minflt": minflt,
                      "driver_rss": driver["rss"],
        "peak_rss": int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) << 10,
        "worker_uss": max(w["uss"] for w in workers), "rank_anon": driver["pss_anon"] + sum(
            w["pss_anon"] for w in workers), "faults": loader.faults.count,
        "batch": list(images.shape), "driver": driver, "workers": workers}), flush=True)
    os._exit(0)      # the workers are daemons; skip the DataLoader's orderly teardown


def run_loader(args, results: dict) -> None:
    import psutil

    runs = results["loader"] = {mode: {} for mode in MODES}
    home = Path(args.work) / "loader-home"       # SHARDFORGE_HOME of the children
    cache = home / "cache" / "index"
    env = {**os.environ, "SHARDFORGE_HOME": str(home)}
    for n in args.rows:
        if psutil.virtual_memory().available < 600 * n:   # synthesis, the loaded index
            results.setdefault("skipped", []).append(f"{n:,} rows: < {600 * n >> 30} GiB free")
            continue
        synth_dataset(Path(args.work), n)
        for mode in MODES:
            runs[mode][str(n)] = []
    for r in range(args.repeats):
        for n in runs["cold"]:
            for mode in MODES:      # cold empties the cache, warm uses what cold built
                if mode == "cold":
                    subprocess.run(["rm", "-rf", str(cache)], check=True)
                spawn, load = time.time(), os.getloadavg()[0]
                proc = subprocess.run([sys.executable, __file__, "--child-loader", str(
                    Path(args.work) / f"ds-{n}"), "--mode", mode], capture_output=True,
                    text=True, env=env)
                if proc.returncode:
                    sys.exit(f"loader child failed at {n} rows ({mode}):\n{proc.stderr[-3000:]}")
                rec = json.loads(proc.stdout.strip().splitlines()[-1])
                rec.update({k: rec[k] - spawn for k in ("start", "imported", "made", "first")},
                           load=load, cache_bytes=sum(f.stat().st_size for f in cache.rglob(
                               "*.npy")) if mode != "off" else 0)
                runs[mode][n].append(rec)
                print(f"round {r}, {n} rows, {mode}: first batch at {rec['first']:.2f} s",
                      file=sys.stderr)


def loader_stats(runs: list[dict]) -> dict:
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k not in (
        "batch", "driver", "workers")}
    return {**out, "loads": f"{min(r['load'] for r in runs):.1f}-"
                            f"{max(r['load'] for r in runs):.1f}"}


# ------------------------------------------------------------------ catalog
def catalog_summary(work: Path, files: int) -> dict:
    """A summary.json-shaped dict: ``files - 1`` tars and an index, real 4 KiB files."""
    out, recs = work / "catalog-files", []
    (out / "wds").mkdir(parents=True, exist_ok=True)
    for k in range(files):
        rel = f"wds/cat-train-{k:06d}.tar" if k < files - 1 else "index.parquet"
        data = hashlib.sha256(str(k).encode()).digest() * 128
        (out / rel).write_bytes(data)
        recs.append({"path": rel, "url": str(out / rel), "size": len(data),
                     "sha256": hashlib.sha256(data).hexdigest(), "samples": 1000})
    n = 1000 * (files - 1)
    return {"out": str(out), "source": "synthetic", "samples": n, "classes": ["c0"], "splits": {
        "train": {"samples": n, "shards": files - 1, "rejects": 0, "per_class": {"0": n}}},
            "formats": {"wds": {"train": recs[:-1]}}, "index": recs[-1], "bytes_per_sample": 4.1,
            "rejects": {"count": 0, "url": str(out / "rejects.jsonl")}, "params": {}}


def run_catalog(args, results: dict) -> None:
    from shardforge.catalog.lookup import get
    from shardforge.catalog.register import register_build
    from shardforge.cli.main import main as cli_main

    home = Path(args.work) / "catalog-home"
    subprocess.run(["rm", "-rf", str(home)], check=True)
    summary = catalog_summary(Path(args.work), args.files)
    cat = results["catalog"] = {"register": [], "points": {}, "files": args.files,
                                "repeats": args.repeats}
    done = 0
    for target in args.builds:
        for i in range(done, target):
            t = time.perf_counter()
            register_build(home, f"ds{i // 10:04d}", dict(summary, job_hash=f"syn-{i}"))
            cat["register"].append(time.perf_counter() - t)
        done, ref = target, f"ds{(target - 1) // 10:04d}"
        assert len(get(ref, home).files()) == args.files
        point = cat["points"][str(target)] = {"load": os.getloadavg()[0],
                                              "db_bytes": (home / "catalog.db").stat().st_size}
        for name, argv in {"list --all": ["--all"], "list": [], "show": [ref], "resolve": [
                ref, "--format", "wds"], "verify": [ref]}.items():
            argv = ["catalog", name.split()[0], *argv, "--home", str(home)]

            def inproc(argv=argv):
                with contextlib.redirect_stdout(io.StringIO()):
                    assert cli_main(argv) == 0

            point[name] = {"cli": min(timeit.repeat(lambda argv=argv: subprocess.run(
                [sys.executable, "-m", "shardforge.cli", *argv], check=True,
                stdout=subprocess.DEVNULL), number=1, repeat=args.repeats)),
                "inproc": min(timeit.repeat(inproc, number=1, repeat=args.repeats))}
        print(f"catalog {target} builds: {json.dumps(point)}", file=sys.stderr)


# ------------------------------------------------------------------ report
def mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def flat(costs: list[float]) -> str:
    ratio = max(costs) / min(costs) if min(costs) > 0 else float("inf")
    return f"{ratio:.2f}x ({'within' if ratio <= GOAL_FLAT else 'misses'} {GOAL_FLAT}x)"


def marginal_table(xs: list[int], series: dict[str, list[float]]) -> list[str]:
    """Cost per item between consecutive sizes, and the spread of those costs."""
    cols = {h: [(y[i + 1] - y[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]
            for h, y in series.items()}
    return common.md_table(["sizes", *cols], [[f"{xs[i]:,} -> {xs[i + 1]:,}", *[
        f"{c[i]:.3g}" for c in cols.values()]] for i in range(len(xs) - 1)] + [
        ["largest / smallest", *map(flat, cols.values())]] + [[f"same, from {xs[1]:,} on", *[
            flat(c[1:]) for c in cols.values()]] for _ in range(len(xs) > 3)])


def plot(path: Path, panels: list[tuple]) -> None:
    """One PNG: panels of (title, xlabel, ylabel, {label: (xs, ys)}, (y, label) or None)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4))
    for ax, (title, xl, yl, lines, goal) in zip(axes, panels, strict=True):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, "o-" if len(xs) < 50 else "-", label=label)
        if goal:
            ax.axhline(goal[0], ls="--", c="grey", label=goal[1])
        ax.set(xscale="log", yscale="log", title=title, xlabel=xl, ylabel=yl)
        ax.grid(True, which="both", alpha=0.3), ax.legend(fontsize=8)
    fig.tight_layout(), fig.savefig(path, dpi=100)


MODE_TEXT = {"cold": "index cache emptied first: the first loader on a node builds it",
             "warm": "index cache built by the cold run: every later loader on the node",
             "off": "no index cache (`index_cache=False`): each loader reads the index into "
                    "its own memory, as before the cache"}


def render_loader(res: dict, doc: Path | None) -> list[str]:
    out = ["### Loader start-up against index rows", "", f"Medians of {res['repeats']} rounds; "
           "times from process start; memory after the first batch; a rank = the driver and "
           "its 2 workers; \"index cache\" = the memory-mapped files every loader of a node "
           "shares (page cache, counted once per node, not in the rank's anon PSS).", ""]
    for mode in MODES:
        out += render_mode(res, mode)
    return out + (plot_loader(res, doc) if doc else [])


def render_mode(res: dict, mode: str) -> list[str]:
    import numpy as np

    st = {int(n): loader_stats(r) for n, r in res["loader"][mode].items() if r}
    ns = sorted(st)
    out = [f"#### {mode.capitalize()}: {MODE_TEXT[mode]}", "", *common.md_table(
               ["index rows", "imports done (s)", "make_loader returned (s)", "first batch (s)",
                "make_loader call: wall / user / system CPU (s)", "first batch after it (s)",
                "driver RSS (MiB)", "driver peak RSS", "worker USS (max)",
                "rank anon PSS (MiB)", "index cache (MiB)", "faults", "1-min load"],
               [[f"{n:,}", f"{s['imported']:.2f}", f"**{s['made']:.2f}**", f"{s['first']:.2f}",
                 f"{s['make']:.2f} / {s['user']:.2f} / {s['sys']:.2f}", f"{s['batch_s']:.2f}",
                 mib(s["driver_rss"]), mib(s["peak_rss"]), mib(s["worker_uss"]),
                 f"**{mib(s['rank_anon'])}**", mib(s["cache_bytes"]), s["faults"], s["loads"]]
                for n, s in st.items()]),
           "", "Marginal per-row costs:", "", *marginal_table(ns, {
               h: [st[n][k] * f for n in ns] for h, k, f in PER_ROW if k in st[ns[0]]}), "",
           "Extrapolation (fitted: "
           "least-squares line a + b * rows through the sizes up to 1.28M / through all sizes):",
           ""]
    rows, small = [], [n for n in ns if n <= 1_280_000]
    for what, key, scale, per_node in (
            ("make_loader returned (s)", "made", 1, 0), ("first batch (s)", "first", 1, 0),
            ("rank anon PSS (GiB)", "rank_anon", 2**-30, 8),
            ("index cache (GiB)", "cache_bytes", 2**-30, 1)):
        if key == "cache_bytes" and mode == "off":
            continue
        fits = [np.polyfit(x, [st[n][key] * scale for n in x], 1) for x in (small, ns)]
        rows.append([what, *[f"{st[n][key] * scale:.2f}" if n in st else "-"
                             for n in (1_280_000, 14_000_000)],
                     *[" / ".join(f"{b * n + a:.2f}" for b, a in fits) for _, n in IMAGENET],
                     f"{per_node * np.polyval(fits[1], IMAGENET[1][1]):.1f}" if per_node
                     else "-"])
    return [*out, *common.md_table(
        ["", "1,280,000 rows, measured", "14,000,000 rows, measured",
         "ImageNet-1k (1,281,167), fitted", "ImageNet-21k (14,197,122), fitted",
         "per 8-rank node at 21k (GiB), fitted: 8 ranks, 1 cache"], rows), ""]


def plot_loader(res: dict, doc: Path) -> list[str]:
    """docs/scale-loader.png: start-up and memory against rows, every mode."""
    st = {mode: {int(n): loader_stats(r) for n, r in res["loader"][mode].items() if r}
          for mode in MODES}

    def series(key, scale=1, label="{mode}"):
        return {label.format(mode=mode): (sorted(st[mode]), [st[mode][n][key] * scale
                                                            for n in sorted(st[mode])])
                for mode in MODES if st[mode]}
    plot(doc.parent / "scale-loader.png", [
        ("loader start-up: process start -> make_loader returned (medians)", "index rows",
         "seconds", series("made", label="{mode} index cache"), (GOAL_S, "goal at 1.28M rows")),
        ("first batch after make_loader (medians)", "index rows", "seconds",
         series("batch_s", label="{mode} index cache"), None),
        ("memory per rank after the first batch", "index rows", "MiB", {
            **series("rank_anon", 2**-20, "rank anon PSS, {mode} index cache"),
            "index cache files (once per node)": (sorted(st["warm"]), [
                st["warm"][n]["cache_bytes"] / 2**20 for n in sorted(st["warm"])])}, None)])
    return ["![loader start-up and memory against index rows](docs/scale-loader.png)", ""]


def render_catalog(res: dict, doc: Path | None) -> list[str]:
    cat, cmds = res["catalog"], ["list --all", "list", "show", "resolve", "verify"]
    ks = sorted(int(k) for k in cat["points"])
    pts, files, reg = [cat["points"][str(k)] for k in ks], cat["files"], cat["register"]
    bands = [statistics.median(reg[a:b]) for a, b in zip([0, *ks], ks, strict=False)]
    out = ["### Catalog commands against registered builds", "",
           f"Best of {cat['repeats']}; `show`/`resolve`/`verify` name the newest build; CLI = "
           "`python -m shardforge.cli catalog ...` as a process, in-process = the same CLI call "
           "(`shardforge.cli.main.main`, output discarded) in a warm process.", "",
           *common.md_table(
               ["builds", "catalog.db (MiB)", *[f"{c}: CLI / in-process (ms)" for c in cmds],
                "register_build: median of the builds registered since the row above (ms)"],
               [[f"{k:,}", mib(p["db_bytes"]), *[f"{1e3 * p[c]['cli']:.0f} / "
                                                  f"{1e3 * p[c]['inproc']:.1f}" for c in cmds],
                 f"{1e3 * r:.0f}"] for k, p, r in zip(ks, pts, bands, strict=True)]),
           "", "Marginal per-build costs (in-process; `list` shows 1 build of 10 per name):", "",
           *marginal_table(ks, {f"{c} (ms/build)": [1e3 * p[c]["inproc"] for p in pts]
                                    for c in cmds[:2]}),
           "", "Per-call costs that should not grow: " + "; ".join(
               f"`{c}` {flat([p[c]['inproc'] for p in pts])} from {ks[0]:,} to {ks[-1]:,} "
               "builds" for c in cmds[2:]) + f"; `register_build` {flat(bands)} across the "
           f"bands. `verify` of one build of {files:,} files (in-process): " + ", ".join(
               f"{1e6 * p['verify']['inproc'] / files:.0f} µs/file at {k:,} builds"
               for k, p in zip(ks, pts, strict=True)) + ".", ""]
    if doc:
        plot(doc.parent / "scale-catalog.png", [
            ("catalog commands, in-process (best of runs)", "builds in the catalog", "seconds",
             {c: (ks, [p[c]["inproc"] for p in pts]) for c in cmds}, None),
            ("register_build as the catalog grows", "builds already registered + 1", "seconds",
             {"register_build": (list(range(1, len(reg) + 1)), reg)}, None)])
        out += ["![catalog commands and registration against builds](docs/scale-catalog.png)", ""]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, default in (("--rows", "10000,100000,1280000,14000000"), ("--builds", "10,100,1000"),
                          ("--files", 1000), ("--repeats", 3), ("--parts", "loader,catalog"),
                          ("--work", "/tmp/sf-scale"), ("--doc", None), ("--out-md", None),
                          ("--child-loader", None), ("--mode", "warm")):
        p.add_argument(flag, default=default, type=type(default) if default else None)
    args = p.parse_args(argv)   # --doc: write this page's section (docs/scale.md)
    if args.child_loader:
        child_loader(args.child_loader, args.mode)
    args.rows, args.builds = ([int(x) for x in v.split(",")] for v in (args.rows, args.builds))
    Path(args.work).mkdir(parents=True, exist_ok=True)
    results: dict = {"load_start": os.getloadavg(), "date": common.utc_date(),
                     "repeats": args.repeats, "uptime": subprocess.run(
                         ["uptime"], capture_output=True, text=True).stdout.strip()}
    wall = time.perf_counter()
    for part, run in (("loader", run_loader), ("catalog", run_catalog)):
        if part in args.parts:
            run(args, results)
    results.update(wall_s=time.perf_counter() - wall, load_end=os.getloadavg())
    doc = Path(args.doc) if args.doc else None
    lines = ["## Scale: per-item costs against the size of the work", "",
             "Write-up, plots and what was fixed: [docs/scale.md](docs/scale.md).", "",
             *common.preamble(common.command_line(), PACKAGES),
             f"- Load: `{results['uptime']}` at the start, 1-min load average "
             f"{results['load_end'][0]:.1f} at the end ({results['wall_s'] / 60:.0f} min later);"
             " 2 CPUs shared with other jobs, so wall times are noisy, CPU times less so",
             *[f"- Skipped: {x}" for x in results.get("skipped", [])], "",
             *(render_loader(results, doc) if "loader" in results else []),
             *(render_catalog(results, doc) if "catalog" in results else [])]
    common.publish_scale(lines, args.out_md, SECTION, results, args.work, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
