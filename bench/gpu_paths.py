"""GPU paths, end to end on one GPU machine: the checks CI cannot run (CI has no GPU).

    python bench/gpu_paths.py --work /tmp/gpu --out OUT_DIR [--quick]

Steps (each a subprocess with its own timeout; a failed step is recorded and the next runs):

1. ``data``: demo data (10 classes x ``--train-per-class``), ingested at 128 px (Ray, all CPUs).
2. ``train_local``: jobs/train.py (rn18_16ep.yaml, WebDataset loader, bf16 autocast,
   channels_last, BlurPool) on the GPU with ``--backend local``.
3. ``model_alone``: the same model's training step alone (synthetic batches on the GPU,
   same batch, resolution, precision and memory format): the loader + loop's limit;
   ``loader_alone``: the WebDataset train loader alone (to the GPU, normalised) vs
   torchvision ImageFolder + DataLoader with the same workers.
4. ``train_ray``: the same recipe through Ray Train (``TorchTrainer``, ``use_gpu``).
5. ``reinforce``: pipelines/reinforce.py with the step-2 checkpoint as teacher on a GPU actor
   (bf16 autocast, channels_last), then the stored top-K against the same teacher in float32
   on the CPU for replayed views (top-1 agreement, top-K overlap, max probability gap);
   ``train_replay``: jobs/train.py on the reinforced dataset (replayed views, stored
   targets) on the GPU.
6. ``stylize``: pipelines/stylize.py, AdaIN (random weights) on a GPU actor under fp16.
7. ``distill``: pipelines/distill.py (RDED) with the step-2 checkpoint as observer on a GPU
   actor.

Writes ``OUT/gpu_paths.json`` (every step: command, exit status, seconds, figures) and
``OUT/gpu_paths.log`` (every step's output). ``--quick`` shrinks every step so that the
script can be tried on a CPU machine first (figures then mean nothing). ``--actors N``
runs reinforce/stylize/distill on N actors sharing the GPU.

    python bench/gpu_paths.py --report RUN1.json [RUN2.json ...] --out-md BENCHMARKS.md

writes the ``gpu`` section of BENCHMARKS.md from such files (the GPU machine has no copy
of this repository's history; the JSON files come back from it and are kept in
docs/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "jobs", "configs", "rn18_16ep.yaml")


def recipe_overrides(quick: bool, workers: int) -> list[str]:
    """rn18_16ep.yaml sized for the demo data: 128 px images, batch 256, wds loader."""
    sets = ["data.loader=wds", f"data.num_workers={workers}", "training.batch_size=256",
            "optim.lr=0.25", "training.epochs=" + ("2" if quick else "12"),
            "optim.lr_peak_epoch=" + ("1" if quick else "2"),
            "resolution.min_res=96", "resolution.max_res=128", "resolution.start_ramp=5",
            "resolution.end_ramp=8", "validation.res=128", "validation.batch_size=256",
            f"scaling.cpus_per_worker={workers}"]
    if quick:
        sets += ["training.batch_size=32", "resolution.min_res=32", "resolution.max_res=32",
                 "validation.res=32", "scaling.use_gpu=false"]
    return [a for s in sets for a in ("--set", s)]


def run_step(name: str, cmd: list[str], timeout: int, log, env: dict) -> dict:
    """Run ``cmd``; its output goes to ``log``; returns name, command, rc, seconds."""
    log.write(f"\n===== {name}: {' '.join(cmd)}\n")
    log.flush()
    t0 = time.perf_counter()
    # Own process group: a timeout ends the step's Ray processes too, not only the driver.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                            start_new_session=True)
    try:
        rc: int | str = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = "timeout"
    sec = round(time.perf_counter() - t0, 1)
    log.write(f"===== {name}: rc={rc} in {sec} s\n")
    log.flush()
    print(f"{name}: rc={rc} {sec} s", flush=True)
    return {"step": name, "cmd": " ".join(cmd), "rc": rc, "seconds": sec}


def steady_rate(per_epoch: list[dict]) -> float:
    """Median training img/s over the epochs at the final resolution, leaving out the first
    epoch at it (worker start-up, cuDNN autotuning for the new shapes)."""
    import statistics

    res = per_epoch[-1]["res"]
    at = [m["images_per_s"] for m in per_epoch if m["res"] == res][1:] or [
        per_epoch[-1]["images_per_s"]]
    return round(statistics.median(at), 1)


def train_figures(run_dir: str) -> dict:
    """Last epoch's val top-1 and :func:`steady_rate` of a run's metrics."""
    from shardforge.train.metrics import read_metrics

    ms = read_metrics(run_dir)
    if not ms:
        return {}
    per_epoch = [{k: m[k] for k in ("epoch", "res", "top1", "images_per_s", "epoch_time_s")}
                 for m in ms]
    return {"epochs": len(ms), "top1": ms[-1]["top1"], "top5": ms[-1]["top5"],
            "train_images_per_s_final_res": steady_rate(per_epoch),
            "final_res": ms[-1]["res"], "per_epoch": per_epoch}


def summary_figures(out: str) -> dict:
    """Throughput figures of a built dataset's summary.json (empty when missing)."""
    path = os.path.join(out, "summary.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        s = json.load(f)
    return {k: s[k] for k in ("samples", "seconds", "images_per_second",
                              "augmentations_per_second", "shards_reused", "devices") if k in s}


def model_alone(batch: int, res: int, steps: int) -> dict:
    """Training steps of rn18_16ep's model (BlurPool ResNet-18, bf16 autocast,
    channels_last, SGD) on synthetic GPU batches: img/s without any data loading."""
    import torch

    from shardforge.models.archs import build_model

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(arch="resnet18", num_classes=10, blurpool=True).to(dev)
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, res, res, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=dev)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    sec = time.perf_counter() - t0
    return {"device": str(dev), "batch": batch, "res": res, "steps": steps,
            "images_per_s": round(batch * steps / sec, 1)}


def loader_alone(parent: str, src: str, batch: int, res: int, workers: int,
                 epochs: int) -> dict:
    """Training-side input pipelines without a model, img/s of the best epoch: shardforge's
    WebDataset loader (the path ``data.loader: wds`` trains through: RandomResizedCrop in the
    workers, uint8 to the GPU, normalised there) vs torchvision ``ImageFolder`` +
    ``DataLoader`` (PIL decode, RandomResizedCrop, ToTensor) on the source JPEGs."""
    import torch
    from torchvision import datasets, transforms

    from shardforge.formats.decode import RandomResizedCrop
    from shardforge.stream.ray_data import to_model_input
    from shardforge.stream.wds_loader import make_loader

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def timed(batches, to_device) -> float:
        t0, n = time.perf_counter(), 0
        for b in batches:
            x = to_device(b)
            n += x.shape[0]
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t0)

    wds = make_loader(parent, "train", batch, num_workers=workers, layout="hwc",
                      transform=RandomResizedCrop(res), pin_memory=dev.type == "cuda")
    wds_rates = []
    for epoch in range(epochs):
        wds.set_epoch(epoch)
        wds_rates.append(timed(wds, lambda b: to_model_input(
            b[0].to(dev, non_blocking=True), channels_last=True)))
    folder = datasets.ImageFolder(os.path.join(src, "train"), transforms.Compose(
        [transforms.RandomResizedCrop(res), transforms.RandomHorizontalFlip(),
         transforms.ToTensor()]))
    tv = torch.utils.data.DataLoader(folder, batch_size=batch, shuffle=True,
                                     num_workers=workers, pin_memory=dev.type == "cuda",
                                     persistent_workers=True)
    tv_rates = [timed(tv, lambda b: b[0].to(dev, non_blocking=True)) for _ in range(epochs)]
    return {"workers": workers, "batch": batch, "res": res,
            "wds_images_per_s": round(max(wds_rates), 1),
            "imagefolder_images_per_s": round(max(tv_rates), 1),
            "ratio": round(max(wds_rates) / max(tv_rates), 2)}


def reinforce_agreement(parent: str, out: str, teacher: str, size: int, top_k: int,
                        rows: int = 64) -> dict:
    """Stored (GPU, bf16) top-K vs the same teacher in float32 on the CPU, on ``rows``
    replayed views of the first reinforce shard."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch

    from shardforge.augment import AugPolicy, apply_params, params_from_columns
    from shardforge.layout.dataset import open_dataset
    from shardforge.layout.reader import RangeReader
    from shardforge.models.reference import parse_member
    from shardforge.ops.normalize import normalize_images
    from shardforge.variants.reinforce.teacher import load_ensemble
    from shardforge.variants.reinforce.transform import decode_stored

    ds = open_dataset(parent)
    index = ds.split("train")
    model = load_ensemble([parse_member(teacher)], ds.classes, "demo").eval()
    files = sorted(os.listdir(os.path.join(out, "reinforce")))
    table = pq.read_table(os.path.join(out, "reinforce", files[0]))
    with open(os.path.join(out, "summary.json")) as f:
        policy = AugPolicy.from_dict(json.load(f)["reinforce"]["policy"])
    pick = np.random.default_rng(0).choice(table.num_rows, size=min(rows, table.num_rows),
                                           replace=False)
    cols = {c: table[c].to_numpy() for c in table.column_names if c.startswith("aug_")}
    records = params_from_columns(cols, policy)
    where = {k: p for p, k in enumerate(index.key.tolist())}
    reader = RangeReader(index.shard_urls)
    top1 = overlap = 0
    gap = 0.0
    for r in pick.tolist():
        p = where[table["key"][r].as_py()]
        (blob,) = reader.read(index.shard[[p]], index.offset[[p]], index.size[[p]])
        view = apply_params(decode_stored(blob), records[r], policy)
        with torch.no_grad():
            probs = model(normalize_images(view[None]))[0]
        top = torch.topk(probs, top_k)
        stored = table["topk_indices"][r].as_py()
        stored_p = np.array(table["topk_probs"][r].as_py(), np.float32)
        top1 += int(top.indices[0]) == stored[0]
        overlap += len(set(top.indices.tolist()) & set(stored))
        gap = max(gap, float(np.abs(probs.numpy()[stored] - stored_p).max()))
    n = len(pick)
    return {"views": n, "top1_agreement": round(top1 / n, 4),
            "topk_overlap": round(overlap / (n * top_k), 4), "max_prob_gap": round(gap, 6)}


def _step(run: dict, name: str) -> dict:
    return next((s for s in run["steps"] if s["step"] == name), {})


def render(runs: list[tuple[str, dict]], command: str) -> str:
    """The BENCHMARKS.md section for ``(json path, results)`` pairs of this script's runs."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import md_table

    first = runs[0][1]
    lines = ["## GPU paths (bench/gpu_paths.py)", "",
             "The paths CI cannot run, end to end on one lent GPU machine: training with bf16 "
             "autocast + channels_last (local processes and Ray Train), training from stored "
             "teacher targets, and the variants' GPU actors. Demo data: 10 classes x 300 "
             "train images, ingested at 128 px on the machine; every figure is one run. The "
             "jobs' img/s include Ray and actor start-up (seconds), which dominates at this "
             "size.", "",
             f"- Command (there): {command}; this section: `python bench/gpu_paths.py "
             "--report " + " ".join(p for p, _ in runs) + " --out-md BENCHMARKS.md`",
             f"- Machine: 1 x {first.get('gpu')}, {first['cpus']} CPUs, Python "
             f"{first['python']}, torch {first['torch']}; ray 2.60.0 and webdataset carried as "
             "wheels (no ffcv there: the FFCV Loader did not run)",
             "- Runs: " + "; ".join(f"`{os.path.basename(p)}` {r['date']} ({r.get('label', '')})"
                                    for p, r in runs), ""]
    rows = []
    for path, run in runs:
        tag = os.path.basename(path).removesuffix(".json")
        for st in run["steps"]:
            f = dict(st.get("figures") or {})
            if f.get("per_epoch"):   # recomputed: earlier files used a plain mean
                f["train_images_per_s_final_res"] = steady_rate(f["per_epoch"])
            f.pop("per_epoch", None)
            text = ", ".join(f"{k} {v}" for k, v in f.items())
            if isinstance(st.get("agreement"), dict):
                text += "; bf16 GPU top-K vs fp32 CPU: " + ", ".join(
                    f"{k} {v}" for k, v in st["agreement"].items())
            rows.append((tag, st["step"], st.get("rc"), st.get("seconds", ""), text or "-"))
    lines += md_table(("run", "step", "exit", "seconds", "figures"), rows)

    def found(name: str) -> list[tuple[str, dict]]:
        return [(os.path.basename(p).removesuffix(".json"), _step(r, name)) for p, r in runs
                if _step(r, name).get("figures")]

    train, alone, loader = found("train_local"), found("model_alone"), found("loader_alone")
    if train and alone and loader:
        m = alone[0][1]["figures"]["images_per_s"]
        ld = loader[0][1]["figures"]
        rates = ", ".join(f"{steady_rate(st['figures']['per_epoch']):,.0f} img/s "
                          f"({m and steady_rate(st['figures']['per_epoch']) / m:.2f}x) in "
                          f"`{tag}`" for tag, st in train)
        lines += ["", "- **Training** (rn18 recipe, 128 px, median of the epochs after the "
                  f"first at 128 px): {rates}; x = vs the model's training step alone "
                  f"({m:,.0f} img/s). The loader alone delivers {ld['wds_images_per_s']:,.0f} "
                  f"img/s to the GPU ({ld['ratio']}x torchvision ImageFolder + DataLoader "
                  "with the same 12 workers). A demo epoch is 12 steps, so per-epoch costs "
                  "weigh heavily: with the train workers restarted every epoch (the first two "
                  "runs) training reached ~0.2x the model alone; with workers kept until the "
                  "resolution changes about 2x that. The first epoch at each resolution "
                  "stays slow (8-16 s: worker start-up and cuDNN autotuning for the new "
                  "shapes); ImageNet-length epochs were not measured."]
    reinforce = found("reinforce")
    if reinforce:
        def actors(st: dict) -> str:
            parts = st.get("cmd", "").split()
            return parts[parts.index("--num-actors") + 1] if "--num-actors" in parts else "?"
        rates = ", ".join(f"{actors(st)} actor(s) {st['figures']['augmentations_per_second']:,.0f}"
                          for _, st in reinforce)
        lines += [f"- **Reinforce** views/s (ResNet-18 teacher, 128 px, 10 augmentations): "
                  f"{rates}. One actor is limited by its CPU side (decode + RandAugment, one "
                  "thread); past 4 actors the 23-40 s jobs are likely dominated by Ray and actor "
                  "start-up (not separated). The "
                  "stored bf16 top-K agreed with the same teacher in float32 on the CPU on "
                  "every run (top-1 64/64 views)."]
    for tag, st in found("train_replay"):
        pe = st["figures"]["per_epoch"]
        lines += [f"- **Training from stored targets** (`{tag}`: jobs/train.py on the "
                  "reinforced dataset: replayed views, densified teacher top-K, KL loss) ran "
                  f"on the GPU: {max(e['images_per_s'] for e in pe):,.0f} img/s at best over "
                  f"{len(pe)} short epochs (the replay decodes and re-augments every view "
                  "on the CPU workers)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", nargs="+", help="results JSON files: write the section only")
    ap.add_argument("--out-md", help="with --report: the markdown file to write the section to")
    ap.add_argument("--work", help="scratch directory (data, runs, outputs)")
    ap.add_argument("--out", help="where gpu_paths.json and the log go")
    ap.add_argument("--train-per-class", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: try the script on a CPU")
    ap.add_argument("--actors", type=int, default=1,
                    help="reinforce/stylize/distill actors sharing the GPU (the jobs' default "
                         "GPUs per actor: 1/N each)")
    ap.add_argument("--label", default="", help="what this run measures (kept in the JSON)")
    ap.add_argument("--steps", default="data,train_local,model_alone,loader_alone,reinforce,"
                                       "train_replay,train_ray,stylize,distill")
    args = ap.parse_args(argv)
    if args.report:
        runs = []
        for path in args.report:
            with open(path) as f:
                runs.append((path, json.load(f)))
        body = render(runs, "`python bench/gpu_paths.py --work /tmp/gpu --out $OUT "
                            "[--actors N] [--steps ...]` (each run's steps are in its table "
                            "rows)")
        if args.out_md:
            from common import write_section

            write_section(args.out_md, "gpu", body)
        print(body)
        return 0
    if not (args.work and args.out):
        ap.error("--work and --out are required (or --report FILES)")
    sys.path.insert(0, os.path.join(REPO, "src"))   # run from a checkout, installed or not
    os.makedirs(args.work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    py = sys.executable
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONUNBUFFERED="1",
               SHARDFORGE_HOME=os.path.join(args.work, "home"))
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(REPO, "src")] + [p for p in [env.get("PYTHONPATH")] if p])
    cpus = os.cpu_count() or 2
    workers = max(1, min(12, cpus - 2))
    quick = args.quick
    actors = str(args.actors)   # GPUs per actor: the jobs' default (the GPU shared by all)
    w = args.work
    parent = os.path.join(w, "datasets", "demo")
    runs = os.path.join(w, "runs")
    teacher = os.path.join(runs, "gpu-local")
    plus = os.path.join(w, "datasets", "demo-plus")
    steps = args.steps.split(",")
    results: dict = {"machine": platform.node(), "python": platform.python_version(),
                     "cpus": cpus, "label": args.label, "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                     "steps": []}
    try:
        import torch
        results["torch"] = torch.__version__
        results["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError as exc:
        results["torch"] = f"not importable: {exc}"
    log = open(os.path.join(args.out, "gpu_paths.log"), "w")

    def save() -> None:
        with open(os.path.join(args.out, "gpu_paths.json"), "w") as f:
            json.dump(results, f, indent=1)

    def step(name: str, cmd: list[str], timeout: int) -> dict:
        rec = run_step(name, cmd, timeout, log, env)
        results["steps"].append(rec)
        save()
        return rec

    cli = [py, "-c", "import sys; from shardforge.cli import main; sys.exit(main())"]
    if "data" in steps:
        per_class = 8 if quick else args.train_per_class
        step("demo_data", cli + ["demo-data", os.path.join(w, "src"),
                                 "--train-per-class", str(per_class)], 120)
        rec = step("ingest", cli + ["ingest", os.path.join(w, "src"), "--name", "demo",
                                    "--out", parent, "--max-res", "128", "--json"], 150)
        summary = os.path.join(parent, "summary.json")
        if os.path.exists(summary):
            with open(summary) as f:
                rec["summary"] = {k: v for k, v in json.load(f).items()
                                  if k in ("samples", "seconds", "images_per_second")}
    train = [py, "jobs/train.py", "--config", RECIPE, "--data", parent, "--storage", runs]
    if "train_local" in steps:
        rec = step("train_local", train + ["--backend", "local", "--name", "gpu-local"]
                   + recipe_overrides(quick, workers), 200)
        rec["figures"] = train_figures(teacher)
    for name, fn in (("model_alone", lambda: model_alone(32 if quick else 256,
                                                           32 if quick else 128,
                                                           3 if quick else 50)),
                     ("loader_alone", lambda: loader_alone(parent, os.path.join(w, "src"),
                                                           32 if quick else 256,
                                                           32 if quick else 128, workers,
                                                           2 if quick else 4))):
        if name not in steps:
            continue
        t0 = time.perf_counter()
        try:
            results["steps"].append({"step": name, "rc": 0, "figures": fn(),
                                     "seconds": round(time.perf_counter() - t0, 1)})
        except Exception as exc:  # noqa: BLE001 - record any failure and go on
            results["steps"].append({"step": name, "rc": repr(exc)})
        print(name, results["steps"][-1], flush=True)
        save()
    size, top_k = (32, 3) if quick else (128, 5)
    if "reinforce" in steps:
        rec = step("reinforce", [py, "pipelines/reinforce.py", "--source", parent,
                                 "--teacher", teacher, "--name", "demo-plus", "--out", plus,
                                 "--num-augmentations", "2" if quick else "10", "--top-k", str(top_k),
                                 "--size", str(size), "--batch-size", "256",
                                 "--num-actors", actors,
                                 "--no-register"], 150)
        rec["figures"] = summary_figures(plus)
        try:
            rec["agreement"] = reinforce_agreement(parent, plus, teacher, size, top_k)
        except Exception as exc:  # noqa: BLE001 - record any failure and go on
            rec["agreement"] = repr(exc)
        save()
    if "train_replay" in steps:   # training from the stored teacher top-K (ImageNet+)
        rec = step("train_replay", train[:5] + [plus] + train[6:]
                   + ["--backend", "local", "--name", "gpu-replay"]
                   + recipe_overrides(quick, workers)
                   + ["--set", "training.epochs=" + ("2" if quick else "4"),
                      "--set", "optim.lr_peak_epoch=1", "--set", "resolution.start_ramp=2",
                      "--set", "resolution.end_ramp=3"], 200)
        rec["figures"] = train_figures(os.path.join(runs, "gpu-replay"))
    if "train_ray" in steps:
        rec = step("train_ray", train + ["--backend", "ray", "--name", "gpu-ray"]
                   + recipe_overrides(quick, workers) + ["--set", "training.epochs=2"], 150)
        rec["figures"] = train_figures(os.path.join(runs, "gpu-ray"))
    if "stylize" in steps:
        from shardforge.variants.stylize.adain import save_random_weights

        weights = os.path.join(w, "adain")
        save_random_weights(weights)
        rec = step("stylize", [py, "pipelines/stylize.py", "--source", parent,
                         "--styles", "builtin:demo", "--weights", weights,
                         "--resize", "64" if quick else "144", "--crop", "64" if quick else "128",
                         "--num-actors", actors,
                         "--out", os.path.join(w, "datasets", "stylized"), "--no-register"], 120)
        rec["figures"] = summary_figures(os.path.join(w, "datasets", "stylized"))
    if "distill" in steps:
        rec = step("distill", [py, "pipelines/distill.py", "--source", parent, "--observer", teacher,
                         "--ipc", "2" if quick else "10", "--size", str(size),
                         "--mipc", "8" if quick else "100",
                         "--num-actors", actors,
                         "--out", os.path.join(w, "datasets", "rded"), "--no-register"], 120)
        rec["figures"] = summary_figures(os.path.join(w, "datasets", "rded"))
    save()
    log.close()
    bad = [s["step"] for s in results["steps"] if s.get("rc") != 0]
    print("failed steps:", bad or "none")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
