"""Rerun docs/results/reinforce.md: hard labels vs reinforced demo data, same student.

    python pipelines/reinforce_effect.py [--root data/reinforce-effect] [--epochs 10 20]
"""

import sys

from experiments.reinforce_effect import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
