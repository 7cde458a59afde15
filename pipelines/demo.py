"""Ray job entry: the built-in demo end to end.

    ray job submit --working-dir . -- python pipelines/demo.py --root DATA_DIR

1. ``shardforge build demo``: generate the seeded demo class-folder tree (once) and
   ingest it into .beton + WebDataset shards, registered in the catalog at DATA_DIR
   (reused when already built);
2. train the small CPU recipe ``jobs/configs/demo_cpu.yaml`` on it with Ray Train and
   print its validation accuracy (chance: 0.1);
3. (unless ``--no-variants``) build the four demo variants from their catalog cards and
   train the same small model on each (``--variant-epochs``, 20 by default), then print
   one table of clean val accuracy next to plain demo at the same length:
   ``demo-plus`` (ImageNet+ reinforcement: teacher = the demo_cpu recipe),
   ``demo-cuda`` (CUDA unlearnable, with a demo key kept in DATA_DIR/demo-cuda.key),
   ``demo-stylized`` (Fourier texture randomisation: this pair is trained at 64 px, where
   textures survive, and the shape bias on the demo cue-conflict set is printed) and
   ``demo-rded-ipc10`` (RDED, 10 images per class, observer = the run of step 2, trained
   with the RDED recipe ``jobs/configs/demo_rded.yaml``, 100 of its 300 epochs).

Finished builds and runs are reused, so a rerun is quick.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from shardforge import catalog
from shardforge.cli import main as shardforge_main
from shardforge.train.job import main as train_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "jobs", "configs", "demo_cpu.yaml")
RDED_CONFIG = os.path.join(REPO, "jobs", "configs", "demo_rded.yaml")
CUDA_KEY_ENV = "SHARDFORGE_DEMO_CUDA_KEY"     # what datasets/demo-cuda.yaml reads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="catalog home and data directory")
    p.add_argument("--no-train", action="store_true", help="build the dataset only")
    p.add_argument("--no-variants", action="store_true", help="skip step 3 (the variants)")
    p.add_argument("--variant-epochs", type=int, default=20,
                   help="epochs of the small model on each variant (and on demo to compare)")
    args = p.parse_args(argv)
    root = os.path.abspath(args.root)
    rc = shardforge_main(["build", "demo", "--home", root])
    if rc != 0 or args.no_train:
        return rc
    build = catalog.get("demo", home=root)
    print(f"\ntraining {CONFIG} on {build.ref} ({build.out})", flush=True)
    rc = _train(CONFIG, build.out, root, "demo_cpu-demo")
    if rc != 0 or args.no_variants:
        return rc
    return variants(root, args.variant_epochs)


def _train(config: str, data: str, root: str, name: str, *overrides: str) -> int:
    sets = [a for o in overrides for a in ("--set", o)]
    return train_main(["--config", config, "--data", data, "--resume", "--storage",
                       os.path.join(root, "runs"), "--name", name, *sets])


def _top1(root: str, name: str) -> float:
    from shardforge.train.metrics import read_metrics

    return read_metrics(os.path.join(root, "runs", name))[-1]["top1"]


def variants(root: str, epochs: int) -> int:
    """Step 3: build every demo variant, train on each, print the comparison."""
    _demo_cuda_key(root)
    rows = []
    ep = f"training.epochs={epochs}"
    if _train(CONFIG, catalog.get("demo", home=root).out, root, f"demo_cpu-{epochs}ep-demo",
              ep) != 0:
        return 1
    rows.append(("demo", "hard labels (baseline)", _top1(root, f"demo_cpu-{epochs}ep-demo")))
    px64 = ("resolution.min_res=64", "resolution.max_res=64", "validation.res=64")
    for card, what, sets in (("demo-plus", "reinforced (stored teacher top-K)", ()),
                             ("demo-cuda", "unlearnable train split (CUDA)", ()),
                             ("demo", "hard labels, 64 px (baseline)", px64),
                             ("demo-stylized", "texture-randomised, 64 px", px64)):
        print(f"\n== {card}", flush=True)
        if shardforge_main(["build", card, "--home", root]) != 0:
            return 1
        run = f"demo_cpu-{epochs}ep-{card}" + ("-64px" if sets else "")
        if _train(CONFIG, catalog.get(card, home=root).out, root, run, ep, *sets) != 0:
            return 1
        rows.append((card, what, _top1(root, run)))
    print("\n== demo-rded-ipc10", flush=True)
    from shardforge.catalog.variant import run_variant
    from shardforge.variants.rded.spec import rded_variant

    observer = os.path.join(root, "runs", "demo_cpu-demo")
    params = {"method": "rded", "ipc": 10, "observer": observer, "size": 32, "mipc": 80,
              "num_crop": 5, "seed": 0}
    summary = run_variant("demo", rded_variant(params), "demo-rded-ipc10", catalog_home=root)
    # The paper's 300 epochs take ~20 min here (100 images: per-epoch overhead dominates).
    if _train(RDED_CONFIG, summary["out"], root, "demo_rded-100ep-demo-rded-ipc10",
              f"targets.teacher_checkpoint={observer}", "training.epochs=100") != 0:
        return 1
    rows.append(("demo-rded-ipc10", "RDED, 10 images per class (RDED recipe, 100 epochs)",
                 _top1(root, "demo_rded-100ep-demo-rded-ipc10")))
    shape = _shape_bias(root, epochs)
    print(f"\nclean val top-1 of the small CNN (demo_cpu recipe, {epochs} epochs unless "
          "noted; chance 0.1):")
    print("| dataset | train split | clean val top-1 |\n|---|---|---|")
    for card, what, top1 in rows:
        print(f"| {card} | {what} | {top1:.3f} |")
    print(shape)
    return 0


def _demo_cuda_key(root: str) -> None:
    """The demo's CUDA key: DATA_DIR/demo-cuda.key (created once, mode 0600), handed to
    the demo-cuda card through the variable it names, in this process only."""
    path = os.path.join(root, "demo-cuda.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
    with open(path) as f:
        os.environ[CUDA_KEY_ENV] = f.read().strip()


def _shape_bias(root: str, epochs: int) -> str:
    from shardforge.sources.demo import DemoSpec
    from shardforge.variants.stylize.cue_conflict import generate_cue_conflict
    from shardforge.variants.stylize.shape_bias import evaluate_shape_bias

    stimuli = os.path.join(root, "cue-conflict")
    generate_cue_conflict(stimuli, DemoSpec(), per_pair=2)
    lines = ["\nshape bias of the 64 px runs on the demo cue-conflict set (shape of one class, "
             "texture of another; 0.5 = no preference):"]
    for card in ("demo", "demo-stylized"):
        r = evaluate_shape_bias(os.path.join(root, "runs", f"demo_cpu-{epochs}ep-{card}-64px"),
                                stimuli, device="cpu")
        lines.append(f"  trained on {card}: shape bias {r['shape_bias']:.3f} "
                     f"({r['shape_hits']} shape / {r['texture_hits']} texture decisions)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
