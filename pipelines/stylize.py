"""Ray job entry: Stylized-ImageNet (Geirhos et al., ICLR 2019) from any parent dataset.

    ray job submit --working-dir . -- python pipelines/stylize.py \\
        --source imagenet --styles PAINTINGS --weights DIR

Every train image is Resize(256) -> CenterCrop(224) and re-rendered with AdaIN (alpha 1)
in the style of a painting drawn with replacement by a seeded RNG; the style id is stored
per sample. AdaIN runs batched on GPU actors (one per GPU) across the cluster's nodes;
the job is sharded and resumable (rerun the same command), writes both formats and
registers the dataset with its parent, the weights' sha256 and the style set's sha256.
Without AdaIN weights, ``--method fourier`` (a weights-free amplitude swap; NOT the
paper's method) runs on CPU tasks. See ``--help``.
"""

import sys

from shardforge.cli.stylize import main

if __name__ == "__main__":
    sys.exit(main())
