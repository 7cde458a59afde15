"""Train an image classifier on a shardforge dataset with Ray Train.

    python jobs/train.py --config jobs/configs/rn50_16ep.yaml --data OUT_DIR_OR_NAME
    ray job submit --working-dir . -- python jobs/train.py --config ... --data s3://...

The run lives in ``RUN.STORAGE_PATH/NAME`` (``--storage``, ``--name``): checkpoints every
epoch and ``metrics.jsonl``. ``--resume`` continues a run from its newest checkpoint.
``--backend local`` runs the same loop as local processes without Ray (debugging; machines
without the ray[train] extra). Exit codes: 0 done, 1 training failed, 2 bad arguments.
See docs/training.md.
"""

import os
import sys

from shardforge.train.job import main

if __name__ == "__main__":
    # Keep a private local Ray on 127.0.0.1 (Ray otherwise swaps in the routable address).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    sys.exit(main())
