"""Ray job entry: the built-in demo end to end.

    ray job submit --working-dir . -- python pipelines/demo.py --root DATA_DIR

Generates the demo class-folder tree (once; deterministic), then ingests it into
.beton + WebDataset shards under DATA_DIR/datasets/demo, and prints the summary.
"""

from __future__ import annotations

import argparse
import os
import sys

from shardforge.cli import main as shardforge_main
from shardforge.sources.demo import DemoSpec, generate_demo_data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="data directory for sources and outputs")
    p.add_argument("--max-res", default="256")
    args = p.parse_args(argv)
    src = os.path.join(args.root, "sources", "demo")
    generate_demo_data(src, DemoSpec())
    out = os.path.join(args.root, "datasets", "demo")
    return shardforge_main(["ingest", src, "--name", "demo", "--out", out,
                            "--max-res", args.max_res, "--shard-size", "200"])


if __name__ == "__main__":
    sys.exit(main())
