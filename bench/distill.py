"""Benchmark RDED distillation: time per class, and candidates scored per second against the
observer's forward pass alone.

Data: the demo dataset (10 classes x 80 train images, ingested at 96 px; built under
``--work`` by :func:`experiments.distill_effect.demo_dataset`). Observers (random
weights: the timing does not depend on them): the demo's small CNN at 32 px (factor 1,
mipc 80, 5 crops: the demo card) and a ResNet-18 at 224 px (factor 2, the paper's ImageNet
setting, ``--mipc`` images per class to keep a CPU run short).

Per observer, in this process (torch threads = ``--threads``): for each class,
``distill_class`` end to end (candidate crops, scoring, selection, stitching), then the
observer's forward pass alone on exactly the same candidate batches (inputs prepared
beforehand). The best of ``--repeats`` rounds per class counts. Then the whole Ray job
(``shardforge.catalog.variant.run_variant`` with ``rded_variant``: decode, per-class actors, encode, both formats)
on a private 2-CPU Ray for the small-CNN setting. Results go to the ``distill`` section of
``--out-md`` and ``WORK/results-distill.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # keep Ray on 127.0.0.1

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout: experiments/
import common  # noqa: E402

SECTION = "distill"
PACKAGES = ("torch", "torchvision", "numpy", "pillow", "ray")


def class_samples(dataset: str) -> dict[int, list]:
    """Decoded train samples of ``dataset`` by label (read from its WebDataset tars)."""
    from shardforge.build.transform import Decoded

    by_label: dict[int, list] = {}
    for path in sorted(Path(dataset, "wds").glob("*-train-*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name, m in members.items():
                key, ext = name.split(".", 1)
                if ext not in ("jpg", "png"):
                    continue
                label = int(tar.extractfile(members[f"{key}.cls"]).read())
                with Image.open(io.BytesIO(tar.extractfile(m).read())) as im:
                    pixels = np.asarray(im.convert("RGB"))
                by_label.setdefault(label, []).append(Decoded(key, label, pixels))
    return by_label


def candidate_inputs(samples: list, params) -> list[torch.Tensor]:
    """The observer's input batches for one class, as distill_class builds them."""
    from shardforge.variants.rded.transform import (
        SCORE_BATCH,
        candidate_crops,
        choose_images,
        class_rng,
        to_observer_input,
    )

    pool = sorted(samples, key=lambda s: s.key)
    rng = class_rng(params.seed, pool[0].label)
    chosen = [pool[i] for i in choose_images([s.key for s in pool], params.mipc, rng)]
    flat = np.concatenate([candidate_crops(s.pixels, params.num_crop, params.patch, rng)[0]
                           for s in chosen])
    return [to_observer_input(flat[i:i + SCORE_BATCH], params.size)
            for i in range(0, len(flat), SCORE_BATCH)]


def time_setting(name: str, model: torch.nn.Module, params, by_label: dict[int, list],
                 classes: int, repeats: int) -> dict:
    """Per-class distil time and scored candidates/s vs forward-only images/s."""
    from shardforge.variants.rded.transform import distill_class

    model.eval()
    per_class, forward, candidates = [], [], 0
    for label in sorted(by_label)[:classes]:
        samples = by_label[label]
        n = min(len(samples), params.mipc) * params.num_crop
        batches = candidate_inputs(samples, params)
        t_all, t_fwd = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            distill_class(samples, params, model)
            t_all.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with torch.no_grad():
                for x in batches:
                    model(x)
            t_fwd.append(time.perf_counter() - t0)
        per_class.append(min(t_all))
        forward.append(min(t_fwd))
        candidates = n
    total, fwd = sum(per_class), sum(forward)
    return {"setting": name, "classes": len(per_class), "candidates_per_class": candidates,
            "class_s": total / len(per_class), "scored_per_s": candidates * len(per_class) / total,
            "forward_per_s": candidates * len(per_class) / fwd, "forward_share": fwd / total}


def time_job(dataset: str, observer_dir: str, work: Path) -> dict:
    """The whole Ray job (2 CPUs) on the demo with the small-CNN observer, from scratch."""
    from shardforge.catalog.variant import run_variant
    from shardforge.engine.cluster import ray_session
    from shardforge.variants.rded.spec import rded_variant

    out = work / "bench-job"
    shutil.rmtree(out, ignore_errors=True)
    params = {"ipc": 10, "size": 32, "mipc": 80, "num_crop": 5, "observer": observer_dir}
    with ray_session(None, num_cpus=2):
        t0 = time.perf_counter()
        summary = run_variant(dataset, rded_variant(params), "bench-rded", str(out), register=False, log=io.StringIO())
        wall = time.perf_counter() - t0
    classes = len(summary["classes"])
    return {"wall_s": wall, "classes": classes, "class_s": wall / classes,
            "train_images": summary["splits"]["train"]["samples"]}


def save_observer(arch: str, classes: list[str], directory: Path) -> str:
    from shardforge.models.archs import build_model
    from shardforge.models.checkpoint import STATE_FORMAT, save_state

    torch.manual_seed(0)
    model = build_model(arch, len(classes), width=16)
    save_state(str(directory / "checkpoint_epoch0001"), {
        "format": STATE_FORMAT, "epochs_done": 1, "model": model.state_dict(),
        "model_spec": {"arch": arch, "num_classes": len(classes), "blurpool": False,
                       "width": 16}, "classes": classes})
    return str(directory)


def main(argv: list[str] | None = None) -> int:
    from experiments.distill_effect import demo_dataset
    from shardforge.models.archs import build_model
    from shardforge.variants.rded.transform import RdedParams

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="data/distill-effect",
                   help="cache directory (the demo data is shared with experiments/distill_effect.py)")
    p.add_argument("--out-md", default="BENCHMARKS.md")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--classes", type=int, default=10, help="classes timed per setting")
    p.add_argument("--mipc", type=int, default=40,
                   help="images per class scored in the ResNet-18 setting")
    p.add_argument("--no-md", action="store_true", help="print only")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work).resolve()
    dataset = demo_dataset(work, lambda m: print(m, file=sys.stderr))
    classes = json.loads(Path(dataset, "summary.json").read_text())["classes"]
    by_label = class_samples(dataset)
    load0 = os.getloadavg()[0]
    settings = [
        ("small CNN (w16), 32 px, factor 1, mipc 80 x 5 crops",
         build_model("small_cnn", len(classes), width=16),
         RdedParams(ipc=10, size=32, mipc=80, num_crop=5), args.classes),
        (f"ResNet-18, 224 px, factor 2, mipc {args.mipc} x 5 crops",
         build_model("resnet18", len(classes)),
         RdedParams(ipc=10, size=224, factor=2, mipc=args.mipc, num_crop=5),
         min(args.classes, 2)),
    ]
    rows = [time_setting(name, model, params, by_label, n, args.repeats)
            for name, model, params, n in settings]
    with tempfile.TemporaryDirectory() as tmp:
        job = time_job(dataset, save_observer("small_cnn", classes, Path(tmp)), work)
    load1 = os.getloadavg()[0]
    results = {"rows": rows, "job": job, "threads": args.threads, "loadavg": [load0, load1]}
    (work / "results-distill.json").write_text(json.dumps(results, indent=2))
    body = "\n".join([
        "## RDED distillation (bench/distill.py)",
        "",
        *common.preamble(common.command_line(), PACKAGES),
        f"- Load average {min(load0, load1):.1f}-{max(load0, load1):.1f} on {common.nproc()} "
        f"CPUs (shared machine); torch threads {args.threads}; best of {args.repeats} per "
        "class; observers with random weights (timing only).",
        "",
        "Per class, in one process: `distill_class` end to end (seeded candidate crops, "
        "scoring, selection, stitching) vs the observer's forward pass alone on the same "
        "candidate batches.",
        "",
        *common.md_table(
            ["setting", "classes timed", "candidates / class", "s / class",
             "candidates scored / s", "forward alone, images / s", "forward share"],
            [(r["setting"], r["classes"], r["candidates_per_class"], f"{r['class_s']:.2f}",
              f"{r['scored_per_s']:,.0f}", f"{r['forward_per_s']:,.0f}",
              f"{r['forward_share']:.0%}") for r in rows]),
        "",
        f"Whole Ray job (`shardforge.catalog.variant.run_variant` with `rded_variant`, private 2-CPU Ray: decode, "
        f"one observer actor per CPU, encode, both formats, val copied) on the demo, small "
        f"CNN setting, IPC 10: {job['wall_s']:.1f} s for {job['classes']} classes "
        f"({job['class_s']:.2f} s per class; Ray already up, actor start-up included), "
        f"{job['train_images']} distilled images.",
    ])
    common.publish(body, None if args.no_md else args.out_md, SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
