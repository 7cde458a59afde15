"""Ray job entry: the built-in demo end to end.

    ray job submit --working-dir . -- python pipelines/demo.py --root DATA_DIR

1. ``shardforge build demo``: generate the seeded demo class-folder tree (once) and
   ingest it into .beton + WebDataset shards, registered in the catalog at DATA_DIR
   (reused when already built);
2. train the small CPU recipe ``jobs/configs/demo_cpu.yaml`` on it with Ray Train and
   print its validation accuracy (chance: 0.1).
"""

from __future__ import annotations

import argparse
import os
import sys

from shardforge import catalog
from shardforge.cli import main as shardforge_main
from shardforge.train.job import main as train_main

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "jobs", "configs", "demo_cpu.yaml")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="catalog home and data directory")
    p.add_argument("--no-train", action="store_true", help="build the dataset only")
    args = p.parse_args(argv)
    rc = shardforge_main(["build", "demo", "--home", args.root])
    if rc != 0 or args.no_train:
        return rc
    build = catalog.get("demo", home=args.root)
    print(f"\ntraining {CONFIG} on demo@v{build.version} ({build.out})", flush=True)
    return train_main(["--config", CONFIG, "--data", build.out, "--resume",
                       "--storage", os.path.join(args.root, "runs"), "--name", "demo_cpu"])


if __name__ == "__main__":
    sys.exit(main())
