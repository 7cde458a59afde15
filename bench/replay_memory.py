"""Memory of the replay loader's stored augmentations: peak RSS of a process that loads
a large synthetic reinforcement, and the time to build its memory-mapped cache.

Generates (once, under ``--work``) a fake parent split (``index.parquet`` +
``summary.json``; no images: loading the reinforcement reads only the index) of
``--samples`` keys in ``--shards`` shards and a matching reinforcement
(``reinforce/*.parquet``, random records and top-K, the reinforce job's schema). Then, each
in a fresh process: ``load_reinforced_split`` with an empty cache (build), again (reuse),
and the reuse followed by ``--reads`` random (sample, augmentation) reads as the loader
does them. Reports peak RSS (``ru_maxrss``), the process's RSS before loading, and the
anonymous / file-backed resident split at the end (``/proc/self/status``).

    python bench/replay_memory.py --work /tmp/replay-bench
    # the previous in-memory loader, for comparison (no cache argument):
    git show f50af73:src/shardforge/stream/replay.py > /tmp/replay_old.py
    python bench/replay_memory.py --work /tmp/replay-bench --module-file /tmp/replay_old.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np

CHILD = r"""
import importlib.util, json, resource, sys, time
import numpy as np

def status():
    out = {}
    for line in open("/proc/self/status"):
        name, _, value = line.partition(":")
        if name in ("RssAnon", "RssFile", "VmRSS"):
            out[name] = int(value.split()[0]) // 1024
    return out

args = json.loads(sys.argv[1])
from shardforge.stream.dataset import open_dataset
if args["module_file"]:
    spec = importlib.util.spec_from_file_location("replay_under_test", args["module_file"])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    load = lambda: mod.load_reinforced_split(args["root"], args["reinforce"], parent)
else:
    from shardforge.stream.replay import load_reinforced_split
    load = lambda: load_reinforced_split(args["root"], args["reinforce"], parent,
                                         cache_dir=args["cache"])
parent = open_dataset(args["root"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
t = time.perf_counter()
stored = load()
seconds = time.perf_counter() - t
rng = np.random.default_rng(0)
n, a = stored.params.shape
for _ in range(args["reads"] // 256):          # batches of 256 as the loader reads them
    p, j = rng.integers(n, size=256), rng.integers(a, size=256)
    rows, idx, prob = stored.params[p, j], stored.topk_indices[p, j], stored.topk_probs[p, j]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
print(json.dumps({"seconds": round(seconds, 2), "rss_before_mib": before,
                  "peak_rss_mib": peak, **{k + "_mib": v for k, v in status().items()}}))
"""


def generate(work: str, samples: int, augs: int, top_k: int, shards: int) -> dict:
    """The fake parent dataset and its reinforcement; returns the ``reinforce`` section."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shardforge.variants.augment import AugPolicy, param_dtype, params_to_columns
    from shardforge.variants.reinforce import output_schema

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


def measure(work: str, reinforce: dict, module_file: str | None, reads: int) -> dict:
    args = {"root": work, "reinforce": reinforce, "cache": os.path.join(work, "cache"),
            "module_file": module_file, "reads": reads}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--augs", type=int, default=50)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--shards", type=int, default=160)
    ap.add_argument("--reads", type=int, default=20_000)
    ap.add_argument("--module-file", help="load_reinforced_split from this file (old code)")
    args = ap.parse_args(argv)
    reinforce = generate(args.work, args.samples, args.augs, args.top_k, args.shards)
    stored = sum(f["size"] for f in reinforce["files"])
    print(json.dumps({"samples": args.samples, "augs": args.augs, "top_k": args.top_k,
                      "parquet_mib": round(stored / 2**20, 1)}))
    if args.module_file:
        print(json.dumps({"old": measure(args.work, reinforce, args.module_file, args.reads)}))
        return
    shutil.rmtree(os.path.join(args.work, "cache"), ignore_errors=True)
    for step in ("build", "reuse"):
        print(json.dumps({step: measure(args.work, reinforce, None, 0)}))
    print(json.dumps({"reuse+reads": measure(args.work, reinforce, None, args.reads)}))


if __name__ == "__main__":
    main()
