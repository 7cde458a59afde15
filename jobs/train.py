"""Ray job entry: train an image classifier on a shardforge dataset (Ray Train).

    ray job submit --working-dir . -- python jobs/train.py --config jobs/configs/rn50_16ep.yaml --data imagenet

Arguments and behaviour: ``python jobs/train.py --help``, shardforge.train.job, docs/training.md.
"""

import os
import sys

from shardforge.train.job import main

if __name__ == "__main__":
    # Keep a private local Ray on 127.0.0.1 (Ray otherwise swaps in the routable address).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    sys.exit(main())
