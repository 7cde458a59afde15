"""Does RDED beat random real images? The demo experiment behind docs/results/distill.md.

On the built-in demo data (10 classes, 80 train / 20 val images each, ingested at 96 px):

1. the observer: jobs/configs/demo_cpu.yaml (small CNN at 32 px, hard labels);
2. for each IPC: an RDED set (size 32, the paper's factor at 32 px, all 80 images x 5 crops
   scored per class) and a random-real-images set (same IPC, same seed rule);
3. the same student and recipe on each set: jobs/configs/demo_rded.yaml (the observer as
   online teacher at T=20 on CutMix batches, AdamW, half cosine);
4. the clean val accuracy of each student (val = demo's, untouched).

Every step reuses what a previous run left in ``work`` (datasets are resumable, finished
training runs are kept), so the command can be rerun after an interruption.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]   # the checkout: experiments/ is at its root
OBSERVER_CONFIG = REPO / "jobs" / "configs" / "demo_cpu.yaml"
STUDENT_CONFIG = REPO / "jobs" / "configs" / "demo_rded.yaml"


@dataclass(frozen=True)
class Row:
    """One student: the set it trained on and its final clean val accuracy."""

    method: str
    ipc: int
    factor: int
    seed: int
    train_images: int
    own_texture: float
    top1: float
    top5: float
    distill_s: float
    train_s: float


def demo_dataset(work: Path, log: Callable[[str], None]) -> str:
    """The demo data ingested at 96 px under ``work/demo`` (reused when present)."""
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.formats.image import ImageParams
    from shardforge.sources.base import SourceOptions
    from shardforge.sources.demo import DemoSpec, generate_demo_data

    out = work / "demo"
    if not (out / "summary.json").exists():
        log("building the demo data")
        if not (work / "demo-src").exists():
            generate_demo_data(work / "demo-src", DemoSpec())
        run_ingest(IngestConfig(source=str(work / "demo-src"), name="demo", out=str(out),
                                image=ImageParams(max_resolution=96),
                                source_options=SourceOptions(shard_size=100)),
                   log=io.StringIO())
    return str(out)


def train(config: Path, data: str, storage: Path, name: str, overrides: list[str],
          log: Callable[[str], None]) -> tuple[dict, float]:
    """Train ``config`` on ``data`` as run ``storage/name`` (``train_recipe``: a finished run
    of the same recipe content is reused, one of another content is left alone and the
    run goes to a keyed name); return its last metrics line and the wall time."""
    from shardforge.train.experiment import train_recipe

    log(f"training {name} ({config.name})")
    started = time.monotonic()
    run = train_recipe(str(config), data, str(storage), name, overrides=tuple(overrides),
                       log=io.StringIO())
    return run.final, time.monotonic() - started


def run_effect(work: str, ipcs: tuple[int, ...] = (1, 10),
               methods: tuple[str, ...] = ("rded", "random"), factor: int | None = None,
               seeds: tuple[int, ...] = (0,), student_epochs: int | None = None,
               student_overrides: tuple[str, ...] = (), tag: str = "",
               log: Callable[[str], None] = print) -> dict:
    """The whole experiment under ``work``; returns ``{"observer": ..., "rows": [...]}``.

    Each seed is both the distillation seed and the student's ``training.seed``.
    ``student_overrides`` (``SECTION.KEY=VALUE``) change the student recipe for an ablation;
    ``tag`` names those runs apart (``student-SET-TAG``)."""
    from shardforge.catalog.variant import run_variant
    from shardforge.engine.cluster import ray_session
    from shardforge.variants.rded.spec import rded_variant

    root = Path(work).resolve()
    storage = root / "runs"
    data = demo_dataset(root, log)
    observer_metrics, observer_s = train(OBSERVER_CONFIG, data, storage, "observer", [], log)
    observer = str(storage / "observer")
    extra = [f"training.epochs={student_epochs}"] if student_epochs else []
    rows = []
    with ray_session(None, num_cpus=2):
        for seed, ipc, method in ((s, i, m) for s in seeds for i in ipcs for m in methods):
            params = {"method": method, "ipc": ipc, "size": 32, "factor": factor, "mipc": 80,
                      "num_crop": 5, "seed": seed,
                      "observer": observer if method == "rded" else None}
            name = (f"{method}-ipc{ipc}" + (f"-f{factor}" if factor else "")
                    + (f"-s{seed}" if seed else ""))
            started = time.monotonic()
            summary = run_variant(data, rded_variant(params), name, str(root / "sets" / name), register=False, log=io.StringIO())
            distill_s = time.monotonic() - started
            f = summary["variant"]["params"]["factor"]
            overrides = [f"targets.teacher_checkpoint={observer}",
                         f"training.patch_shuffle={f if method == 'rded' else 1}",
                         f"training.seed={seed}", *extra, *student_overrides]
            run = f"student-{name}" + (f"-{tag}" if tag else "")
            metrics, train_s = train(STUDENT_CONFIG, str(root / "sets" / name), storage, run,
                                     overrides, log)
            own = own_texture_rate(source_keys(str(root / "sets" / name)))
            rows.append(Row(method, ipc, f, seed, summary["splits"]["train"]["samples"], own,
                            metrics["top1"], metrics["top5"], distill_s, train_s))
            log(f"{name}: val top-1 {metrics['top1']:.3f}")
    result = {"observer": {"top1": observer_metrics["top1"], "train_s": observer_s},
              "rows": [r.__dict__ for r in rows]}
    suffix = (f"-f{factor}" if factor else "") + (f"-{tag}" if tag else "")
    (root / f"distill_effect{suffix}.json").write_text(json.dumps(result, indent=2))
    return result


def source_keys(set_dir: str) -> list[str]:
    """The parent keys a distilled set's train images come from (every RDED patch's source,
    or the random baseline's image), read from the set's ``.json`` members."""
    import tarfile

    keys = []
    for path in sorted(Path(set_dir, "wds").glob("*-train-*.tar")):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    keys += ([p["key"] for p in meta["patches"]] if "patches" in meta
                             else [meta["source"]])
    return keys


def own_texture_rate(keys: list[str]) -> float:
    """Fraction of demo train images (keys ``train_CLASS_CLASS_NNNNNN-HASH``) whose texture is
    their own class's (the demo draws it with probability 0.8; val textures are random, so
    only shape carries over to val). Re-renders each image's metadata from the default spec."""
    from shardforge.sources.demo import DemoSpec, render_demo_image

    spec, own = DemoSpec(), 0
    for key in keys:
        parts = key.split("_")
        cls, index = parts[1], int(parts[-1].split("-")[0])
        own += render_demo_image(spec, "train", cls, index)[1]["texture"] == cls
    return own / max(len(keys), 1)


def markdown_table(result: dict) -> str:
    """The results as a Markdown table: one row per set, top-1 per seed and the mean."""
    groups: dict[tuple, list[dict]] = {}
    for r in result["rows"]:
        groups.setdefault((r["ipc"], r["method"], r["factor"], r["train_images"]), []).append(r)
    lines = ["| set | IPC | factor | train images | sources with own-class texture | "
             "val top-1 per seed | mean top-1 | mean top-5 |",
             "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"]
    for (ipc, method, factor, n), rs in groups.items():
        per_seed = ", ".join(f"{r['top1']:.3f}" for r in rs)
        own = sum(r["own_texture"] for r in rs) / len(rs)
        lines.append(f"| {method} | {ipc} | {factor} | {n} | {own:.0%} | {per_seed} | "
                     f"{sum(r['top1'] for r in rs) / len(rs):.3f} | "
                     f"{sum(r['top5'] for r in rs) / len(rs):.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python experiments/distill_effect.py --work data/distill-effect``: run it, print the
    table (also saved as WORK/distill_effect[-fF][-TAG].json)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")   # Ray on 127.0.0.1
    p = argparse.ArgumentParser(description="The RDED-vs-random experiment on the demo data (docs/results/distill.md).")
    p.add_argument("--work", default="data/distill-effect", help="working directory")
    p.add_argument("--ipc", type=int, action="append", help="IPC values (default 1 and 10)")
    p.add_argument("--method", action="append", choices=("rded", "random"),
                   help="methods (default both)")
    p.add_argument("--factor", type=int, default=None,
                   help="RDED factor (default: the paper's rule, 1 at 32 px)")
    p.add_argument("--seed", type=int, action="append",
                   help="seeds: distillation and student (default 0; repeat for more)")
    p.add_argument("--epochs", type=int, default=None,
                   help="student epochs (default: jobs/configs/demo_rded.yaml's)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SEC.KEY=VAL", help="student recipe override (an ablation)")
    p.add_argument("--tag", default="", help="name for the ablation's student runs")
    plots = _plots()
    plots.plot_argument(p, "distill")
    args = p.parse_args(argv)
    if args.overrides and not args.tag:
        p.error("--set changes the student recipe: name the ablation with --tag")
    result = run_effect(args.work, tuple(args.ipc or (1, 10)),
                        tuple(args.method or ("rded", "random")), factor=args.factor,
                        seeds=tuple(args.seed or (0,)), student_epochs=args.epochs,
                        student_overrides=tuple(args.overrides), tag=args.tag,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"observer val top-1 {result['observer']['top1']:.3f}")
    print(markdown_table(result))
    # the main run and its ablations under this --work (distill_effect[-fF][-TAG].json)
    plots.try_plot(plots.plot_distill, plots.load_results(args.work, "distill_effect"),
                   args.plot)
    return 0


def _plots():
    """``experiments.plots`` (matplotlib is imported only when a figure is drawn)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))   # run as `python experiments/NAME.py`
    from experiments import plots

    return plots


if __name__ == "__main__":
    sys.exit(main())
