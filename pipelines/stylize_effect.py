"""Shape bias and clean accuracy of the demo recipe trained on demo vs demo-stylized.

    python pipelines/stylize_effect.py --root data/stylize-effect

Builds both cards, trains jobs/configs/demo_cpu.yaml on each (local CPU processes), makes
the demo cue-conflict set and prints a markdown table (docs/results/stylize.md).
"""

import sys

from experiments.stylize_effect import main

if __name__ == "__main__":
    sys.exit(main())
