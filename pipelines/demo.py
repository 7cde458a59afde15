"""Ray job entry: the built-in demo end to end.

    ray job submit --working-dir . -- python pipelines/demo.py --root DATA_DIR

1. ``shardforge build demo``: generate the seeded demo class-folder tree (once) and
   ingest it into .beton + WebDataset shards, registered in the catalog at DATA_DIR
   (reused when already built);
2. train the small CPU recipe ``jobs/configs/demo_cpu.yaml`` on it with Ray Train and
   print its validation accuracy (chance: 0.1);
3. (unless ``--no-variants``) measure each paper's effect at demo scale with the setting
   of its results page (``experiments/demo_effects.py``; docs/results/) and print one
   table, every row a variant next to its baseline with a verdict (shown / within noise /
   opposite, against two standard errors): ImageNet+ reinforcement (the same student on
   hard labels and on stored teacher top-K, same augmentation and the paper's policy),
   CUDA (clean vs fully poisoned square 32 px demo, a demo key kept in
   DATA_DIR/demo-cuda.key), the stylized set's shape bias (64 px, 40 epochs, 360
   cue-conflict stimuli) and RDED (10 selected vs 10 random images per class, the RDED
   recipe for 100 of its 300 epochs). ``--seed`` reruns the students with another seed.

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
sys.path.insert(0, REPO)    # experiments/ (the effect measurements) sits next to pipelines/
CONFIG = os.path.join(REPO, "jobs", "configs", "demo_cpu.yaml")
CUDA_KEY_ENV = "SHARDFORGE_DEMO_CUDA_KEY"     # what datasets/demo-cuda.yaml reads


def main(argv: list[str] | None = None) -> int:
    from shardforge.logs import show_progress

    show_progress()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="catalog home and data directory")
    p.add_argument("--no-train", action="store_true", help="build the dataset only")
    p.add_argument("--no-variants", action="store_true", help="skip step 3 (the variants)")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed of the step-3 students (the datasets and teachers "
                        "are shared across seeds, so another seed reruns only the students)")
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
    return variants(root, args.seed)


def _train(config: str, data: str, root: str, name: str, *overrides: str) -> int:
    sets = [a for o in overrides for a in ("--set", o)]
    return train_main(["--config", config, "--data", data, "--resume", "--storage",
                       os.path.join(root, "runs"), "--name", name, *sets])


def _top1(root: str, name: str) -> float:
    from shardforge.train.metrics import read_metrics

    return read_metrics(os.path.join(root, "runs", name))[-1]["top1"]


def variants(root: str, seed: int) -> int:
    """Step 3: each paper's effect at demo scale (experiments/demo_effects.py), printed as
    one table with a verdict per row."""
    from experiments import demo_effects as fx

    key = _demo_cuda_key(root)
    effects = []
    for title, measure in (
            ("Dataset Reinforcement (demo-plus policies)",
             lambda: fx.reinforce_effects(root, seed)),
            ("CUDA (square 32 px demo, p = 1)", lambda: [fx.cuda_effect(root, seed, key)]),
            ("Stylized-ImageNet (demo-stylized, 64 px)",
             lambda: [fx.stylize_effect(root, seed)]),
            ("RDED (10 images per class vs 10 random)", lambda: [fx.rded_effect(root, seed)])):
        print(f"\n== {title}", flush=True)
        effects.extend(measure())
        for e in effects[-1:]:
            print(f"{e.paper}: {e.metric}: {e.base:.3f} -> {e.value:.3f} ({e.verdict})",
                  flush=True)
    print("\n" + fx.effects_table(effects, seed))
    return 0


def _demo_cuda_key(root: str) -> str:
    """The demo's CUDA key: DATA_DIR/demo-cuda.key (created once, mode 0600), handed to
    the demo-cuda card through the variable it names, in this process only."""
    path = os.path.join(root, "demo-cuda.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
    with open(path) as f:
        key = f.read().strip()
    os.environ[CUDA_KEY_ENV] = key
    return key


if __name__ == "__main__":
    sys.exit(main())
