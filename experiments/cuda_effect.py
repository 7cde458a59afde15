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

import dataclasses
import io
import os
import sys
from dataclasses import dataclass
from typing import TextIO

from shardforge.sources.demo import DemoSpec

#: The recipe the effect is measured with, relative to the repository root.
DEFAULT_CONFIG = os.path.join("jobs", "configs", "demo_cpu.yaml")
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
    from shardforge.train.config import load_config
    from shardforge.train.runner import prepare_run, run_training

    cfg = load_config(config, overrides)
    plan = prepare_run(cfg, data, config, name, storage, resume=True)
    done = [m for m in _metrics(plan.run_dir) if m["epoch"] == cfg.training.epochs]
    if done:
        return _metrics(plan.run_dir)
    return run_training(plan, cfg, backend)


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
