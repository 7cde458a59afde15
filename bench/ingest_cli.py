"""Ingest as users run it: the ``shardforge ingest`` CLI vs an FFCV ``DatasetWriter`` script,
whole processes, on natural photographs.

    python bench/ingest_cli.py --sizes 2000,20000 --resolutions 256,512 --repeats 2 \\
        --out-md BENCHMARKS.md

Corpus: ``bench/photos.py`` (crops of scikit-image's sample photos, sides 350-650 px,
JPEG q90), one class-folder tree per size. A private Ray head (``ray start --head`` on
127.0.0.1, token auth) is started before anything is timed, as on a cluster; every run
is then a fresh process timed from start to exit:

* shardforge: ``python -m shardforge.cli ingest SRC --ray-address HEAD ...``: tars +
  .beton + index + manifests (the driver builds shards too while Ray starts workers);
* FFCV: a script doing FFCV's ImageNet example (``ImageFolder`` ->
  ``DatasetWriter(RGBImageField(write_mode='jpg', max_resolution=R, jpeg_quality=90),
  IntField(), num_workers=W)``): one .beton, same W workers;
* Ray connect: ``python -c "import ray; ray.init(HEAD); ray.shutdown()"``, the floor of
  any Ray driver.

Reported: process wall time (best of ``--repeats``, all runs listed), the fixed cost (a
20-image run, best of ``--repeats`` x ``--small-repeats``, against the best Ray connect of
as many), the marginal rate between the two largest sizes (what the fixed cost does
not explain), CPU seconds of every process involved (the Ray head's workers included),
and the merged .beton's size against FFCV's file for the same images.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import photos  # noqa: E402

PACKAGES = ("shardforge", "ffcv", "ray", "opencv-python-headless", "pillow", "numpy",
            "scikit-image")
SECTION = "ingest-cli"
FFCV_CHILD = """
import os, sys, time
os.environ["TQDM_DISABLE"] = "1"
t0 = time.perf_counter()
from ffcv.fields import IntField, RGBImageField
from ffcv.writer import DatasetWriter
from torchvision.datasets import ImageFolder
src, out, res, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
writer = DatasetWriter(out, {"image": RGBImageField(write_mode="jpg", max_resolution=res,
                                                    jpeg_quality=90), "label": IntField()},
                       num_workers=workers)
dataset = ImageFolder(src)
t1 = time.perf_counter()
writer.from_indexed_dataset(dataset, chunksize=100)
print(f"setup {t1 - t0:.3f} write {time.perf_counter() - t1:.3f}")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_head(cpus: int) -> tuple[subprocess.Popen, str, dict]:
    """A private Ray head on 127.0.0.1 with a random token; (process, address, env)."""
    port = _free_port()
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=os.urandom(16).hex(),
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", str(cpus), "--include-dashboard=false",
         "--ray-client-server-port", str(_free_port()),
         "--dashboard-agent-listen-port", str(_free_port()), "--disable-usage-stats"],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    probe = [sys.executable, "-c", f"import ray; ray.init(address='{address}'); ray.shutdown()"]
    deadline = time.monotonic() + 120
    while subprocess.run(probe, env=env, capture_output=True).returncode != 0:
        if time.monotonic() > deadline or head.poll() is not None:
            raise RuntimeError("the Ray head did not come up in 120 s")
        time.sleep(1)
    return head, address, env


def stop_head(head: subprocess.Popen) -> None:
    """Stop exactly the processes of the head's session."""
    import signal

    try:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(head.pid, signal.SIGKILL)


class TreeCPU:
    """CPU seconds of the Ray head's processes while a command runs: polls every
    descendant of the head (workers come and go) every 0.1 s, keeping each process's last
    reading, so workers that exit mid-run still count (minus at most 0.1 s each)."""

    def __init__(self, roots: list[int]) -> None:
        import threading

        self.roots, self.seen, self.base = roots, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.base = self._poll()

    def _poll(self) -> dict[tuple[int, float], float]:
        import psutil

        out = {}
        for root in self.roots:
            try:
                procs = [psutil.Process(root)]
                procs += procs[0].children(recursive=True)
            except psutil.Error:
                continue
            for proc in procs:
                try:
                    t = proc.cpu_times()
                    out[(proc.pid, proc.create_time())] = t.user + t.system
                except psutil.Error:
                    pass
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.update(self._poll())
            self._stop.wait(0.1)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> float:
        """Stop polling; CPU seconds used since construction."""
        self._stop.set()
        self._thread.join()
        self.seen.update(self._poll())
        return sum(v - self.base.get(k, 0.0) for k, v in self.seen.items())


def timed(cmd: list[str], env: dict, head_pid: int) -> dict:
    """Run ``cmd`` to completion: wall seconds, CPU seconds (it and its children, exactly,
    from rusage; the Ray head's processes, polled), its stdout."""
    import resource

    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tree = TreeCPU([head_pid])
    tree.start()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    head = tree.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... exited {proc.returncode}:\n"
                           f"{proc.stderr[-2000:]}")
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
    return {"wall": wall, "cpu": own + head, "load": load, "stdout": proc.stdout}


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return path


def run_round(args, corpora: dict, address: str, env: dict, head_pid: int,
              results: dict) -> None:
    """One run of every (method, size, resolution), interleaved."""
    runs = Path(args.work) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for _ in range(args.small_repeats):
        connect = timed([sys.executable, "-c", f"import ray; ray.init(address='{address}', "
                         "log_to_driver=False); ray.shutdown()"], env, head_pid)
        results["connect"].append(connect["wall"])
    for n, root in corpora.items():
        for res in args.resolutions:
            entry = results["runs"].setdefault(f"{n}-{res}", {"ffcv": [], "shardforge": []})
            beton = _fresh(runs / "ffcv.beton")
            r = timed([sys.executable, "-c", FFCV_CHILD, str(root), str(beton), str(res),
                       str(args.workers)], env, head_pid)
            setup, write = (float(x) for x in re.findall(r"[\d.]+", r.pop("stdout"))[:2])
            entry["ffcv"].append({**r, "setup": setup, "write": write,
                                  "bytes": beton.stat().st_size})
            methods = (("shardforge", []), ("shardforge_reencode", ["--reencode"]))
            for method, extra in methods * (args.small_repeats if n == 20 else 1):
                out = _fresh(runs / "sf")
                r = timed([sys.executable, "-m", "shardforge.cli", "ingest", str(root),
                           "--name", "bench", "--out", str(out), "--max-res", str(res),
                           "--no-register", "--ray-address", address, "--json", *extra],
                          env, head_pid)
                summary = json.loads(r.pop("stdout"))
                if summary["samples"] != n or summary["rejects"]["count"]:
                    raise RuntimeError(f"shardforge wrote {summary['samples']} samples, "
                                       f"{summary['rejects']['count']} rejects; expected {n}, 0")
                beton_bytes = sum(p.stat().st_size for p in out.glob("beton/*.beton"))
                entry.setdefault(method, []).append({**r, "in_job": summary["seconds"],
                                                     "bytes": beton_bytes})
            print(f"[{n} x {res}px] ffcv {entry['ffcv'][-1]['wall']:.2f} s "
                  f"(write {write:.2f}), shardforge {entry['shardforge'][-1]['wall']:.2f} s, "
                  f"--reencode {r['wall']:.2f} s (in job {summary['seconds']:.2f}), "
                  f"load {r['load']:.1f}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2000,20000", help="corpus sizes (a 20-image run is "
                                                         "added for the fixed cost)")
    p.add_argument("--resolutions", default="256,512")
    p.add_argument("--workers", type=int, default=2, help="FFCV workers = Ray head CPUs")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--small-repeats", type=int, default=4,
                   help="shardforge's 20-image runs and the Ray connect, per round: a fixed "
                        "cost of about a second is noisier than the big runs")
    p.add_argument("--work", default="/tmp/sf-bench")
    p.add_argument("--out-md")
    args = p.parse_args(argv)
    args.resolutions = [int(r) for r in args.resolutions.split(",")]
    sizes = sorted({20, *(int(s) for s in args.sizes.split(","))})
    wall0 = time.perf_counter()
    corpora, stats = {}, {}
    for n in sizes:
        root, _, st = photos.ensure_corpus(photos.PhotoCorpus(images=n), Path(args.work),
                                           args.workers)
        corpora[n] = root
        st.pop("long_sides")
        stats[n] = st
    head, address, env = start_head(args.workers)
    results: dict = {"connect": [], "runs": {}, "corpus": stats, "workers": args.workers,
                     "kept": {str(n): {str(r): kept_share(root, r) for r in args.resolutions}
                              for n, root in corpora.items()}}
    try:
        for _ in range(args.repeats):
            run_round(args, corpora, address, env, head.pid, results)
    finally:
        stop_head(head)
    results["total_wall_s"] = time.perf_counter() - wall0
    Path(args.work, "results-ingest-cli.json").write_text(json.dumps(results, indent=1))
    common.publish(render(args, results, sizes), args.out_md, SECTION)
    return 0


def kept_share(root: Path, res: int) -> float:
    """Share of the corpus's JPEGs that ingest at ``--max-res res`` keeps as they are."""
    from shardforge.formats.image import DEFAULT_MAX_PIXELS, MAX_SIDE
    from shardforge.formats.jpeg_keep import keepable_jpeg

    files = [f for f in sorted(Path(root).glob("*/*")) if f.suffix.lower() in (".jpg", ".jpeg")]
    kept = sum(keepable_jpeg(f.read_bytes(), res, DEFAULT_MAX_PIXELS, MAX_SIDE, 90) is not None
               for f in files)
    return kept / max(1, len(files))


def _best(runs: list[dict], key: str = "wall") -> dict:
    return min(runs, key=lambda r: r[key])


def render(args, results: dict, sizes: list[int]) -> str:
    """The BENCHMARKS.md section."""
    big = [n for n in sizes if n != 20]
    st = results["corpus"][big[-1]]
    connect = min(results["connect"])
    connect_median = float(statistics.median(results["connect"]))
    lines = ["## Ingest through the CLI, natural photographs", "",
             *common.preamble(common.command_line(), PACKAGES),
             f"- Corpus: {st['what']}; seeded crops, sides {st['min_side']}-{st['max_side']} "
             f"px (mean {st['mean_w']:.0f}x{st['mean_h']:.0f}), JPEG q90, "
             f"{st['mean_kb']:.0f} KiB/image; one class-folder tree per size, 10 classes, in "
             "the page cache",
             f"- A private Ray head with {args.workers} CPUs started before timing; FFCV with "
             f"num_workers={args.workers}. Every time is a whole process, start to exit. "
             f"Best of {args.repeats} interleaved rounds (of {args.repeats * args.small_repeats} "
             "runs for shardforge's 20-image ingests and the Ray connect), all runs listed. "
             "1-min load average "
             f"at the runs: {min(r['load'] for e in results['runs'].values() for m in e.values() for r in m):.1f}"
             f"-{max(r['load'] for e in results['runs'].values() for m in e.values() for r in m):.1f}",
             f"- Ray connect (import ray, ray.init to the head, shutdown): {connect:.2f} s best, "
             f"{connect_median:.2f} s median; runs: "
             f"{', '.join(f'{c:.2f}' for c in results['connect'])}", ""]
    rows = []
    for key, entry in results["runs"].items():
        n, res = (int(x) for x in key.split("-"))
        f, s = _best(entry["ffcv"]), _best(entry["shardforge"])
        e = _best(entry["shardforge_reencode"])
        rows.append([n, res, f"{100 * results['kept'][str(n)][str(res)]:.0f}%",
                     ", ".join(f"{r['wall']:.2f}" for r in entry["ffcv"]),
                     f"{f['setup']:.2f} + {f['write']:.2f}",
                     ", ".join(f"{r['wall']:.2f}" for r in entry["shardforge"]),
                     ", ".join(f"{r['wall']:.2f}" for r in entry["shardforge_reencode"]),
                     f"**{f['wall'] / s['wall']:.2f}x**", f"{f['wall'] / e['wall']:.2f}x",
                     f"{1e3 * f['cpu'] / n:.2f} / {1e3 * s['cpu'] / n:.2f} / "
                     f"{1e3 * e['cpu'] / n:.2f}",
                     f"{s['bytes'] / f['bytes']:.3f} / {e['bytes'] / f['bytes']:.3f}"])
    lines += common.md_table(
        ["images", "R", "kept as they are", "FFCV script runs (s)",
         "FFCV best: import+setup + write (s)", "shardforge CLI runs (s)",
         "--reencode runs (s)", "CLI speed-up (FFCV wall / ours)", "same, --reencode",
         "CPU ms / image, FFCV / ours / --reencode", ".beton bytes / FFCV's, ours / --reencode"],
        rows)
    lines += ["", "- 'kept as they are': the share of the corpus that `formats/jpeg_keep.py` "
              "stores without a re-encode at this R (fits, q90 source = --jpeg-quality 90); "
              "FFCV's writer re-encodes every image. `--reencode` does FFCV's work exactly "
              "(decode, resize when needed, encode every image), for both formats."]
    lines += ["", "Fixed cost and marginal rate (best runs):", ""]
    mrows = []
    for res in args.resolutions:
        small = results["runs"][f"20-{res}"]
        s20, f20 = _best(small["shardforge"])["wall"], _best(small["ffcv"])["wall"]
        s20_median = float(statistics.median([r["wall"] for r in small["shardforge"]]))
        a, b = big[0], big[-1]
        ea, eb = results["runs"][f"{a}-{res}"], results["runs"][f"{b}-{res}"]
        fm = (b - a) / (_best(eb["ffcv"])["wall"] - _best(ea["ffcv"])["wall"])
        fw = (b - a) / (_best(eb["ffcv"])["write"] - _best(ea["ffcv"])["write"])
        sm, em = ((b - a) / (_best(eb[m])["wall"] - _best(ea[m])["wall"])
                  for m in ("shardforge", "shardforge_reencode"))
        mrows.append([res, f"{s20:.2f} ({s20 - connect:+.2f} over Ray connect)",
                      f"{s20_median:.2f} (**{s20_median - connect_median:+.2f}** over Ray "
                      "connect)", f"{f20:.2f}",
                      f"{sm:.0f}", f"{em:.0f}", f"{fm:.0f} ({fw:.0f} write phase)",
                      f"**{sm / fm:.2f}x**", f"{em / fm:.2f}x"])
    lines += common.md_table(
        ["R", "shardforge, 20 images: best (s)", "median (goal: <= +0.5 s)",
         "FFCV, 20 images (s)",
         f"shardforge marginal img/s ({big[0]}->{big[-1]})", "--reencode marginal img/s",
         "FFCV marginal img/s", "marginal ratio", "marginal ratio, --reencode"], mrows)
    lines += ["", "- The fixed cost is judged on medians: `ray.shutdown()` (in both the "
              "connect process and the CLI) takes about 0.27 s in most runs and almost nothing "
              "in some (Ray's core worker disconnect; measured with cProfile, 2026-12-06), so a "
              "best run of one against a best run of the other measures luck, not shardforge.",
              f"- Whole benchmark wall time: {results['total_wall_s']:.0f} s."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
