"""Measuring CUDA's effect: the same recipe trained on clean vs unlearnable demo data.

:func:`run_effect` generates the built-in demo data, ingests it at ``resolution`` px (the
parent), builds its CUDA copies at each poison fraction ``p`` (one key), trains the same
recipe (default ``jobs/configs/demo_cpu.yaml``) on the clean parent and on every copy,
and reports each run's accuracy on the clean val split (every copy's val split is the
parent's, byte for byte). Every step is reused when rerun: the datasets by the engine's
resumability, the training runs from their checkpoints.

CUDA is applied at the resolution the model trains at (32 px by default, CIFAR-like with
the paper's CIFAR filters k=3, pb=0.3): a filter applied at 256 px and then downscaled 8x
to a 32 px training crop would mostly be averaged away, which measures the resize, not
CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import shlex
import sys
from dataclasses import dataclass
from typing import TextIO

from shardforge.sources.demo import DemoSpec

#: The recipe the effect is measured with, relative to the repository root.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the checkout
DEFAULT_CONFIG = os.path.join(REPO, "jobs", "configs", "demo_cpu.yaml")
DEFAULT_PS = (0.25, 0.5, 0.75, 1.0)
#: ``--set`` overrides applied to the recipe by default, to come close to the paper's CIFAR
#: ERM training (Sadasivan et al. CVPR 2023: ResNet-18 on the 32 x 32 images themselves,
#: random crop with 4 px padding and flip the only augmentation): no random-resized zoom
#: (crop_scale 1: the whole stored image, longest side 32 px, at most stretched to 32 x 32,
#: so the 3 x 3 filters are not zoomed away; there is no padded-crop shift), flip kept, val
#: uncropped at the same scale, no BlurPool (itself a blur in every strided conv), no label
#: smoothing, one process with the recipe's global batch (2 x 16). Measured at p = 1
#: (docs/results/unlearnable.md, non-square images): demo_cpu.yaml as is 0.90 -> 0.74, with
#: these 0.93 -> 0.40-0.53 (three runs); with these on square images (DEFAULT_SPEC)
#: 0.95 -> 0.11-0.19 (three runs).
DEFAULT_OVERRIDES = (
    "training.crop_scale=[1.0, 1.0]",
    "validation.crop_ratio=1.0",
    "model.blurpool=false",
    "optim.label_smoothing=0.0",
    "scaling.num_workers=1",
    "data.num_workers=1",
    "training.batch_size=32",
)
#: The demo data the effect is measured on by default: square images (as CIFAR's), so the
#: 32 px parent stores every image at exactly 32 x 32 and the recipe above trains on it with
#: no resampling at all (only flips). ``DemoSpec()`` (aspect ratios 2:3 to 3:2) gives the
#: earlier, non-square data: at p = 1, 0.93 -> 0.40-0.53 instead of 0.95 -> 0.11-0.19.
DEFAULT_SPEC = DemoSpec(min_side=128, max_side=128)
#: The key of the published table: public and fixed so that anyone can rerun it exactly.
#: Never use it to protect data.
EXPERIMENT_KEY = "shardforge-demo-experiment-key"


@dataclass(frozen=True)
class EffectRun:
    """One trained run: its dataset, poison fraction (0 = the clean parent) and results."""

    dataset: str
    p: float
    poisoned: int
    train_samples: int
    top1: float
    top1_last5: float
    top5: float
    train_top1: float
    train_loss: float
    epochs: int


#: Which val split the runs are scored on (see :func:`run_effect`).
VAL_SPLITS = ("heldout", "demo")


def _source_tree(work: str, spec: DemoSpec, val: str) -> str:
    """The demo class-folder tree; with ``val="heldout"``, its val split is replaced by
    held-out images of the train distribution (train images ``train_per_class ..
    train_per_class + val_per_class - 1`` of each class, hard-linked)."""
    from shardforge.sources.demo import generate_demo_data

    tag = _data_tag(spec)
    if val == "demo":
        src = os.path.join(work, f"demo-src{tag}")
        generate_demo_data(src, spec)
        return src
    full = os.path.join(work, f"demo-src{tag}-train")
    generate_demo_data(full, dataclasses.replace(
        spec, val_per_class=0, train_per_class=spec.train_per_class + spec.val_per_class))
    tree = os.path.join(work, f"demo-src{tag}-heldout")
    for cls in sorted(os.listdir(os.path.join(full, "train"))):
        names = sorted(os.listdir(os.path.join(full, "train", cls)))
        for i, name in enumerate(names):
            split = "train" if i < spec.train_per_class else "val"
            dst = os.path.join(tree, split, cls, name)
            if not os.path.exists(dst):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.link(os.path.join(full, "train", cls, name), dst)
    return tree


def _data_tag(spec: DemoSpec) -> str:
    """``""`` for the generator's default sizes, ``"sq"`` for square images of one size,
    else ``"-MIN-MAX"``: datasets of different specs never share a name or a directory."""
    if (spec.min_side, spec.max_side) == (DemoSpec().min_side, DemoSpec().max_side):
        return ""
    if spec.min_side == spec.max_side:
        return "sq"
    return f"-{spec.min_side}-{spec.max_side}"


def _ingest_parent(work: str, spec: DemoSpec, resolution: int, val: str, log: TextIO) -> str:
    from shardforge.build.config import IngestConfig
    from shardforge.build.job import run_ingest
    from shardforge.formats.image import ImageParams

    src = _source_tree(work, spec, val)
    name = (f"demo{resolution}" if val == "demo" else f"demo{resolution}h") + _data_tag(spec)
    out = os.path.join(work, "datasets", name)
    run_ingest(IngestConfig(source=src, name=name, out=out,
                            image=ImageParams(max_resolution=resolution)),
               log=log)
    return out


def recipe_tag(config: str, overrides: tuple[str, ...]) -> str:
    """``CONFIG-STEM`` or ``CONFIG-STEM-HASH`` of the overrides: each recipe's runs live in
    their own directory, so a rerun with other overrides never reuses another's runs."""
    stem = os.path.splitext(os.path.basename(config))[0]
    if not overrides:
        return stem
    import hashlib

    return f"{stem}-{hashlib.sha256(chr(0).join(overrides).encode()).hexdigest()[:8]}"


def _train(data: str, name: str, config: str, overrides: list[str], storage: str,
           backend: str) -> list[dict]:
    from shardforge.train.experiment import train_recipe

    run = train_recipe(config, data, storage, name, overrides=tuple(overrides),
                       backend=backend)
    return _metrics(run.run_dir)


def _metrics(run_dir: str) -> list[dict]:
    from shardforge.train.metrics import read_metrics

    try:
        return read_metrics(run_dir)
    except FileNotFoundError:
        return []


def run_effect(work: str, key: str, *, ps: tuple[float, ...] = DEFAULT_PS,
               resolution: int = 32, config: str = DEFAULT_CONFIG,
               overrides: tuple[str, ...] = DEFAULT_OVERRIDES,
               spec: DemoSpec = DEFAULT_SPEC,
               backend: str = "local", kernel_size: int | None = None,
               pb: float | None = None, val: str = "heldout",
               log: TextIO | None = None) -> list[EffectRun]:
    """Train ``config`` on the clean demo parent and on its CUDA copies at each ``p``;
    return one :class:`EffectRun` per run (clean first). Everything lands under ``work``.
    ``overrides`` (``--set`` style) default to :data:`DEFAULT_OVERRIDES`; ``()`` trains
    ``config`` as it is.

    ``val="heldout"`` (default): the val split is clean held-out images of the train
    distribution (as CIFAR's test set is for CIFAR's train set). ``val="demo"``: demo's
    own val split, whose textures are drawn independently of the class (a texture-shift
    test: only shape transfers)."""
    if val not in VAL_SPLITS:
        raise ValueError(f"val {val!r} is not one of {VAL_SPLITS}")
    from shardforge.catalog.variant import run_variant
    from shardforge.engine.cluster import ray_session
    from shardforge.variants.cuda.spec import make_variant, secrets_of
    from shardforge.variants.cuda.transform import is_poisoned

    log = log if log is not None else sys.stderr
    quiet = io.StringIO()
    storage = os.path.join(work, "runs", recipe_tag(config, overrides))
    datasets = []
    with ray_session():
        parent = _ingest_parent(work, spec, resolution, val, quiet)
        base = os.path.basename(parent)
        datasets.append((base, 0.0, parent))
        for p in ps:
            name = f"{base}-cuda-p{int(round(p * 100)):03d}"
            variant = make_variant({"p": p, "kernel_size": kernel_size, "pb": pb},
                                   secrets_of(key))
            out = os.path.join(work, "datasets", name)
            run_variant(parent, variant, name, out, register=False, log=quiet)
            datasets.append((name, p, out))
            print(f"built {name}", file=log, flush=True)
    runs = []
    for name, p, data in datasets:
        metrics = _train(data, name, config, list(overrides), storage, backend)
        final = metrics[-1]
        keys = _train_keys(data)
        poisoned = sum(is_poisoned(key, k, p) for k in keys) if p > 0 else 0
        last5 = sum(m["top1"] for m in metrics[-5:]) / len(metrics[-5:])
        run = EffectRun(name, p, poisoned, len(keys), final["top1"], last5, final["top5"],
                        final["train_top1"], final["train_loss"], final["epoch"])
        print(f"trained {name}: clean val top1 {run.top1:.3f}", file=log, flush=True)
        runs.append(run)
    return runs


def _train_keys(data: str) -> list[str]:
    import pyarrow.parquet as pq

    rows = pq.read_table(os.path.join(data, "index.parquet"), columns=["key", "split"])
    return [k for k, s in zip(rows.column("key").to_pylist(), rows.column("split").to_pylist(),
                              strict=True) if s == "train"]


def effect_table(runs: list[EffectRun]) -> list[str]:
    """Markdown table rows: one line per run, the clean run first, then by ``p``.

    Val top-1 is the last epoch's and the mean of the last five (epoch-to-epoch noise on
    200 val images is a few points); "vs clean" compares the five-epoch means."""
    runs = sorted(runs, key=lambda r: r.p)
    clean = runs[0].top1_last5
    lines = ["| training data | p | poisoned train images | clean val top-1 (last epoch) | "
             "mean of last 5 epochs | vs clean | val top-5 | train top-1 (own data) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        rel = "-" if r.p == 0 else f"{r.top1_last5 - clean:+.3f}"
        lines.append(f"| {r.dataset} | {r.p:g} | {r.poisoned} / {r.train_samples} | "
                     f"{r.top1:.3f} | {r.top1_last5:.3f} | {rel} | {r.top5:.3f} | "
                     f"{r.train_top1:.3f} |")
    return lines

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="directory for data, datasets and runs")
    p.add_argument("--out-md", default=None, help="write the results page here")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="training recipe (default: jobs/configs/demo_cpu.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="recipe override (repeatable, after the defaults), e.g. "
                        "training.epochs=10")
    p.add_argument("--recipe-as-is", action="store_true",
                   help="train --config without the default overrides (DEFAULT_OVERRIDES: "
                        "no random-resized crop, no BlurPool, no label smoothing, 1 worker)")
    p.add_argument("--varied-aspect", action="store_true",
                   help="demo images of the generator's default sizes (aspect 2:3 to 3:2, "
                        "stretched to 32 x 32 when trained) instead of square ones")
    p.add_argument("--p", type=float, nargs="+", default=list(DEFAULT_PS),
                   help="poison fractions (default: 0.25 0.5 0.75 1.0)")
    p.add_argument("--resolution", type=int, default=32,
                   help="parent max resolution = training resolution (default 32)")
    p.add_argument("--val", choices=VAL_SPLITS, default="heldout",
                   help="val split scored: held-out images of the train distribution "
                        "(default) or demo's own texture-shifted val")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="training backend (default: local processes)")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--key-file", metavar="PATH", help="private key file")
    keys.add_argument("--key-env", metavar="VAR", help="environment variable with the key")
    args = p.parse_args(argv)
    from shardforge.cli.unlearnable import read_key

    key = EXPERIMENT_KEY
    if args.key_file or args.key_env:
        try:
            key = read_key(key_file=args.key_file, key_env=args.key_env)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    args.overrides = (() if args.recipe_as_is else DEFAULT_OVERRIDES) + tuple(args.set)
    from shardforge.sources.demo import DemoSpec

    spec = DemoSpec() if args.varied_aspect else DEFAULT_SPEC
    runs = run_effect(args.work, key, ps=tuple(args.p), resolution=args.resolution, spec=spec,
                      config=args.config, overrides=args.overrides, backend=args.backend,
                      val=args.val)
    table = effect_table(runs)
    print("\n".join(table))
    if args.out_md:
        command = "python " + " ".join(shlex.quote(a) for a in
                                       ["experiments/cuda_effect.py", *sys.argv[1:]])
        write_page(args.out_md, table, command, args, runs)
    return 0


def write_page(path: str, table: list[str], command: str, args, runs) -> None:
    """Write the measured block (setup and table) of the results page, between its
    ``<!-- unlearnable-effect -->`` markers; the rest of the page (discussion) is kept."""
    import platform
    import subprocess

    date = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    clean = runs[0]
    full = next((r for r in runs if r.p == 1.0), None)
    lines = [
        f"- Command: `{command}`",
        f"- Date: {date}; {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs (shared machine)",
        "- Data: the demo generator's defaults (10 shape classes, 800 train images"
        + (")" if args.varied_aspect else "; square 128 px images, `DEFAULT_SPEC`)")
        + " with "
        + ("20 held-out train-distribution images per class as val"
           if args.val == "heldout" else "demo's own 200 val images (texture-shifted)")
        + f", ingested at max {args.resolution} px (JPEG q90): the clean parent. Its val "
        "split is clean in every run (CUDA copies keep the parent's val bytes).",
        "- CUDA: one key (the public experiment key, `EXPERIMENT_KEY`) for every p; the "
        "per-size defaults (k=3, pb=0.3 at <= 128 px: the paper's CIFAR setting); each train "
        "image poisoned independently with probability p (nested: an image poisoned at p "
        "is poisoned at every larger p).",
        f"- Recipe: `{os.path.relpath(args.config, REPO)}`"
        + (f" with `--set` {', '.join(args.overrides)}" if args.overrides else "")
        + ", identical for every run; val top-1 with flip TTA.",
        "", *table, "",
    ]
    if full is not None:
        lines += [f"Clean-trained: {clean.top1_last5:.3f}; trained on the fully poisoned copy "
                  f"(p = 1): {full.top1_last5:.3f} (means of the last five epochs; chance "
                  "0.100).", ""]
    plots = _plots()
    figure = page_figure(path) if plots.has_matplotlib() else None
    if figure:
        lines += [f"![Clean val top-1 against the poison fraction p, every sweep on this page]"
                  f"({os.path.relpath(figure, os.path.dirname(os.path.abspath(path)))})", ""]
    replace_block(path, "unlearnable-effect", "\n".join(lines), PAGE_HEADER)
    if figure:
        # drawn from the page as written: this block's sweep and the page's other sweeps
        with open(path) as f:
            plots.try_plot(plots.plot_cuda_sweep, plots.unlearnable_from_page(f.read()), figure)


def page_figure(path: str) -> str:
    """The figure of the results page ``path``: ``img/STEM.png`` next to it."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(os.path.dirname(os.path.abspath(path)), "img", f"{stem}.png")


def _plots():
    """``experiments.plots`` (matplotlib is imported only when a figure is drawn)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)   # run as `python experiments/cuda_effect.py`
    from experiments import plots

    return plots


PAGE_HEADER = "# CUDA unlearnable datasets: measured effect on the demo data\n"


def replace_block(path: str, name: str, body: str, header: str) -> None:
    """Replace (or append) the ``<!-- NAME -->`` ... ``<!-- /NAME -->`` block of ``path``."""
    import re

    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{body.strip()}\n{end}\n"
    text = open(path).read() if os.path.exists(path) else header
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    text = pattern.sub(lambda _: block, text, count=1) if pattern.search(text) \
        else text.rstrip() + "\n\n" + block
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
