"""Ray job entry: ingest a source into .beton + WebDataset shards.

    ray job submit --working-dir . -- python pipelines/ingest.py SRC --name NAME --out URL

Same arguments as ``shardforge ingest`` (see ``--help``).
"""

import sys

from shardforge.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
