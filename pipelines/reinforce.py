"""Ray job entry: dataset reinforcement (ImageNet+) of a catalog dataset.

    ray job submit --working-dir . -- python pipelines/reinforce.py --source imagenet \\
        --teacher CKPT_OR_ARCH=WEIGHTS[,MEMBER2,...] --num-augmentations 400 --num-gpus-per-actor 1

With no arguments: the built-in demo data with a teacher trained there, on CPU.
See ``--help`` and shardforge.variants.reinforce.spec.
"""

import sys

from shardforge.cli.reinforce import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
