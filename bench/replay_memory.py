"""Memory of the replay loader's stored augmentations with W loader processes: each
holding its own in-memory copy (the previous loader) vs the shared memory-mapped cache.

Generates (once, under ``--work``; reused by later runs) a fake parent split
(``index.parquet`` + ``summary.json``; no images: loading the reinforcement reads only the
index) of ``--samples`` keys in ``--shards`` shards and a matching reinforcement
(``reinforce/*.parquet``: random records and top-K in the reinforce job's schema). Then:

1. build: one process, empty cache, ``load_reinforced_split`` (the cache's first build);
2. for each way of holding the records, ``--workers`` processes started together (as
   DataLoader workers of one node), each importing and opening the parent index, then
   loading, then doing ``--reads`` random (sample, augmentation) reads in batches of 256
   as ``ReplayStream`` does (worker ``w`` seeds its reads with ``w``):

   (a) in RAM per process: the cache's three ``.npy`` arrays read fully into memory
       (``np.load`` without ``mmap_mode``), a private copy per process as the previous
       loader held (it parsed the parquet shards instead, so its load was slower);
   (b) shared memory map: ``load_reinforced_split`` as the loader calls it (reuses the
       cache built in step 1; read-only memmaps).

Memory is PSS (``/proc/PID/smaps_rollup``, which splits each shared page among the
processes mapping it, so the W values add up to what the W processes hold together),
read in every process at two points where all W are alive: after the imports a load
needs and opening the parent index (the baseline), and after the reads. Also each
process's private RSS (``RssAnon``), mapped file RSS (``RssFile``) and load time.

    python bench/replay_memory.py --out-md BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SECTION = "replay-memory"
ARRAYS = ("params", "topk_indices", "topk_probs")
IMAGENET_PLUS = (1_281_167, 400, 10)      # train images, augmentations, top-K (ImageNet+)

# One process. Protocol on stdin/stdout, one line each way, so that the parent reads
# every process's memory while all W are alive: "ready" -> (line) -> baseline, load,
# reads -> "loaded" -> (line) -> final JSON -> (stdin EOF) -> exit.
CHILD = r"""
import json, resource, sys, time
import numpy as np

def mib(path, names):
    out = {}
    for line in open(path):
        name, _, value = line.partition(":")
        if name in names:
            out[name] = int(value.split()[0]) / 1024
    return out

def pss():
    return mib("/proc/self/smaps_rollup", ("Pss", "Pss_Anon", "Pss_File"))

args = json.loads(sys.argv[1])
from shardforge.layout.dataset import open_dataset
from shardforge.stream.replay import load_reinforced_split
import shardforge.stream.array_cache, shardforge.augment  # what a load imports
parent = open_dataset(args["root"])
parent.split(args["reinforce"]["split"])
if args["mode"] != "build":
    print("ready", flush=True)
    sys.stdin.readline()
base = pss()
base_status = mib("/proc/self/status", ("RssAnon", "RssFile", "VmRSS"))
t, cpu = time.perf_counter(), time.process_time()
if args["mode"] == "ram":
    arrays = [np.load(f"{args['folder']}/{name}.npy") for name in args["arrays"]]
else:
    stored = load_reinforced_split(args["root"], args["reinforce"], parent,
                                   cache_dir=args["cache"])
    arrays = [getattr(stored, name) for name in args["arrays"]]
seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
rng = np.random.default_rng(args["seed"])
n, a = arrays[0].shape[:2]
for _ in range(args["reads"] // 256):          # batches of 256 as ReplayStream reads them
    p, j = rng.integers(n, size=256), rng.integers(a, size=256)
    rows = [arr[p, j] for arr in arrays]
if args["mode"] != "build":
    print("loaded", flush=True)
    sys.stdin.readline()
status = mib("/proc/self/status", ("RssAnon", "RssFile", "VmRSS"))
print(json.dumps({"load_s": seconds, "load_cpu_s": cpu, "base": base, "end": pss(),
                  "status": status,
                  "base_status": base_status,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "folder": getattr(locals().get("stored"), "cache", None)}), flush=True)
sys.stdin.read()
"""


def generate(work: str, samples: int, augs: int, top_k: int, shards: int) -> dict:
    """The fake parent dataset and its reinforcement; returns the ``reinforce`` section."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shardforge.augment import AugPolicy, param_dtype, params_to_columns
    from shardforge.variants.reinforce.transform import output_schema

    done = os.path.join(work, "reinforce.json")
    if os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    policy = AugPolicy(size=224)
    os.makedirs(os.path.join(work, "reinforce"), exist_ok=True)
    keys = np.array([f"{i:08d}" for i in range(samples)], dtype=object)
    shard = np.arange(samples) * shards // samples
    names = np.array([f"fake-train-{s:06d}.tar" for s in range(shards)], dtype=object)
    pq.write_table(pa.table({
        "key": pa.array(keys.tolist()), "label": pa.array(np.zeros(samples, np.int64)),
        "split": pa.array(["train"] * samples), "shard": pa.array(names[shard].tolist()),
        "offset": pa.array(np.arange(samples, dtype=np.int64) * 1024),
        "size": pa.array(np.full(samples, 1024, np.int64)),
        "format": pa.array(["jpg"] * samples),
        "width": pa.array(np.full(samples, 256, np.int32)),
        "height": pa.array(np.full(samples, 256, np.int32)),
        "sha256": pa.array(["0" * 64] * samples)}), os.path.join(work, "index.parquet"))
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump({"name": "fake", "classes": [str(c) for c in range(1000)]}, f)
    rng = np.random.default_rng(0)
    dtype = param_dtype(policy)
    files = []
    for s in range(shards):
        pos = np.flatnonzero(shard == s)
        rows = len(pos) * augs
        records = np.zeros(rows, dtype)
        for name in dtype.names or ():
            info = np.iinfo(dtype[name]) if dtype[name].kind in "iu" else None
            records[name] = (rng.integers(0, min(info.max, 200), rows) if info is not None
                             else rng.random(rows))
        idx = rng.integers(0, 1000, (rows, top_k)).astype(np.int16)
        prob = np.sort(rng.random((rows, top_k)).astype(np.float16) / top_k, axis=1)[:, ::-1]
        cols = {"key": pa.array(np.repeat(keys[pos], augs).tolist(), pa.string()),
                "label": pa.array(np.zeros(rows, np.int32)),
                "aug": pa.array(np.tile(np.arange(augs, dtype=np.int32), len(pos)))}
        cols.update({n: pa.array(v) for n, v in params_to_columns(records).items()})
        cols["topk_indices"] = pa.FixedSizeListArray.from_arrays(pa.array(idx.reshape(-1)),
                                                                 top_k)
        cols["topk_probs"] = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(prob).reshape(-1)), top_k)
        path = f"reinforce/fake-plus-train-{s:06d}.parquet"
        pq.write_table(pa.table(cols, schema=output_schema(policy, top_k)),
                       os.path.join(work, path), compression="zstd")
        with open(os.path.join(work, path), "rb") as f:
            data = f.read()
        files.append({"path": path, "size": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()})
    reinforce = {"split": "train", "num_augs": augs, "top_k": top_k, "seed": 0,
                 "policy": policy.to_dict(), "files": files}
    with open(done, "w") as f:
        json.dump(reinforce, f)
    return reinforce


def child_args(work: str, reinforce: dict, mode: str, seed: int, reads: int,
               folder: str | None) -> str:
    return json.dumps({"root": work, "reinforce": reinforce, "cache": os.path.join(work, "cache"),
                       "mode": mode, "seed": seed, "reads": reads, "folder": folder,
                       "arrays": ARRAYS})


def build(work: str, reinforce: dict) -> dict:
    """The cache's first build, in one fresh process (the cache folder emptied first)."""
    shutil.rmtree(os.path.join(work, "cache"), ignore_errors=True)
    out = subprocess.run([sys.executable, "-c", CHILD,
                          child_args(work, reinforce, "build", 0, 0, None)],
                         check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return json.loads(out.stdout.strip().splitlines()[-1])


def workers(work: str, reinforce: dict, mode: str, count: int, reads: int,
            folder: str) -> list[dict]:
    """``count`` processes loading the records the ``mode`` way ("ram" or "mmap"),
    stepped together so that every PSS reading sees all of them alive."""
    procs = [subprocess.Popen([sys.executable, "-c", CHILD,
                               child_args(work, reinforce, mode, w, reads, folder)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for w in range(count)]
    try:
        for expect in ("ready", "loaded"):
            for proc in procs:
                line = proc.stdout.readline().strip()
                if line != expect:
                    raise RuntimeError(f"{mode} worker {proc.pid}: expected {expect!r}, got "
                                       f"{line!r} (exit code {proc.poll()}); see its stderr")
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
        results = [json.loads(proc.stdout.readline()) for proc in procs]
    finally:
        for proc in procs:
            proc.stdin.close()
        for proc in procs:
            proc.wait(timeout=60)
    return results


def summarise(results: list[dict]) -> dict:
    total = sum(r["end"]["Pss"] for r in results)
    base = sum(r["base"]["Pss"] for r in results)
    return {"pss_total": total, "pss_base": base, "pss_extra": total - base,
            "pss_file": sum(r["end"]["Pss_File"] for r in results),
            "anon": [r["status"]["RssAnon"] for r in results],
            "anon_extra": [r["status"]["RssAnon"] - r["base_status"]["RssAnon"]
                           for r in results],
            "file_extra": [r["status"]["RssFile"] - r["base_status"]["RssFile"]
                           for r in results],
            "load_s": [r["load_s"] for r in results],
            "load_cpu_s": [r["load_cpu_s"] for r in results]}


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    lo, hi = min(values), max(values)
    if fmt.format(lo) == fmt.format(hi):
        return fmt.format(lo)
    return f"{fmt.format(lo)}-{fmt.format(hi)} (median {fmt.format(statistics.median(values))})"


def report(r: dict, args) -> str:
    a, b = r["ram"], r["mmap"]
    ratio = a["pss_extra"] / b["pss_extra"]
    n, augs, k = args.samples, args.augs, args.top_k
    big_n, big_a, big_k = IMAGENET_PLUS
    scale = (big_n * big_a * (r["record_bytes"] + 4 * big_k)
             / (n * augs * (r["record_bytes"] + 4 * k)))    # int16 + float16 per top-K entry
    big_cache = scale * r["cache_bytes"]
    w = args.workers
    lines = [
        "## Replay loader memory (ImageNet+ stored augmentations)", "",
        f"{w} processes on one node (as {w} DataLoader workers) each hold a reinforced "
        f"split's stored augmentations ({n:,} samples x {augs} augmentations, top-{k}: "
        f"{r['parquet_bytes'] / 2**20:.0f} MiB of parquet, {r['cache_bytes'] / 2**20:.0f} MiB "
        "of aligned arrays `params` [N,A] + `topk_indices` [N,A,K] int16 + `topk_probs` "
        "[N,A,K] float16, random synthetic records) and do "
        f"{args.reads:,} random (sample, augmentation) reads each in batches of 256, as "
        "`ReplayStream` does. (a) in RAM per process: the cache's arrays read fully into "
        "memory (`np.load`, no mmap), one private copy per process, as the previous loader "
        "held them; (b) shared memory map: `load_reinforced_split` (read-only memmaps of the "
        "node-local cache, built once).", ""]
    lines += common.preamble(common.command_line(), ["numpy", "pyarrow"])
    lines += ["", *common.md_table(
        ["", f"total PSS, {w} processes (MiB)", "of which file-backed (MiB)",
         f"baseline PSS, {w} processes (MiB)", "PSS above baseline (MiB)",
         "private RSS per process (RssAnon, MiB)", "RssAnon above baseline (MiB)",
         "RssFile above baseline (MiB)", "load per process: wall s", "CPU s"],
        [[name, f"{s['pss_total']:.0f}", f"{s['pss_file']:.0f}", f"{s['pss_base']:.0f}",
          f"{s['pss_extra']:.0f}", spread(s["anon"]), spread(s["anon_extra"]),
          spread(s["file_extra"]), spread(s["load_s"], "{:.2f}"),
          spread(s["load_cpu_s"], "{:.2f}")]
         for name, s in (("(a) in RAM per process", a),
                         ("(b) shared memory-mapped cache", b))]), "",
        f"- **(a)/(b) = {ratio:.1f}x** in PSS above baseline: total PSS of the {w} processes "
        f"after the reads minus their total PSS after the imports a load needs and opening "
        "the parent index "
        f"(the baseline, read in each process while all {w} were alive, before loading; "
        "it includes the parent's index and the shared libraries' share).",
        f"- Cache build (first load, one process, empty cache): {r['build']['load_s']:.1f} s "
        f"wall, {r['build']['load_cpu_s']:.1f} s CPU, "
        f"peak RSS {r['build']['peak_rss_mib']:.0f} MiB, of which "
        f"{r['build']['base_status']['VmRSS']:.0f} MiB before loading (imports and parent "
        "index). Every later load reuses it. Wall times are from a shared machine (load "
        f"average {r['load']:.1f} on {common.nproc()} CPUs at the end), CPU times much less "
        "so; (a)'s copies "
        "are read from the cache files already in the page cache, so they are faster than "
        "the previous loader, which parsed the parquet shards in every process.",
        f"- (b)'s PSS is the cache pages the processes touched (file-backed, in the OS page "
        f"cache, counted once however many processes map them, reclaimable under pressure); "
        f"it grows with the reads up to the cache size ({r['cache_bytes'] / 2**20:.0f} MiB) "
        f"once per node; here the reads mapped {spread(b['file_extra'])} MiB of it into each "
        "process (the kernel's fault-around also maps already-cached neighbours of each "
        "faulted page). (a) holds the "
        "whole arrays privately (anonymous memory) in every process from the load on.",
        f"- Extrapolation, linear in the arrays' size (not measured): at ImageNet+ scale "
        f"({big_n:,} samples x {big_a} augmentations x K={big_k}, "
        f"{big_cache / 1e9:.1f} GB of arrays) (a) would take "
        f"~{a['pss_extra'] / w * scale / 1024:.0f} GiB per process, "
        f"~{a['pss_extra'] * scale / 1024:.0f} GiB for {w} workers, while (b) stays at most "
        f"{big_cache / 2**30:.0f} GiB of shared page cache per node whatever the number of "
        "ranks and workers."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/sf-bench-replay-memory",
                    help="generated data (reused between runs) and the cache")
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--augs", type=int, default=50)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--shards", type=int, default=160)
    ap.add_argument("--workers", type=int, default=4, help="processes per way (W)")
    ap.add_argument("--reads", type=int, default=20_000, help="random reads per process")
    ap.add_argument("--out-md", help="write the results into this markdown file's section")
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    t = time.perf_counter()
    reinforce = generate(args.work, args.samples, args.augs, args.top_k, args.shards)
    print(f"data ready in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    r: dict = {"parquet_bytes": sum(f["size"] for f in reinforce["files"])}
    r["build"] = build(args.work, reinforce)
    folder = r["build"]["folder"]
    r["cache_bytes"] = sum(os.path.getsize(os.path.join(folder, f"{name}.npy"))
                           for name in ARRAYS)
    r["record_bytes"] = np.load(os.path.join(folder, "params.npy"), mmap_mode="r").itemsize
    print(json.dumps({"build": r["build"]}), file=sys.stderr)
    for mode in ("mmap", "ram"):
        r[mode + "_raw"] = workers(args.work, reinforce, mode, args.workers, args.reads, folder)
        r[mode] = summarise(r[mode + "_raw"])
        print(json.dumps({mode: r[mode]}), file=sys.stderr)
    r["load"] = os.getloadavg()[0]
    common.publish(report(r, args), args.out_md, SECTION, r, args.work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
