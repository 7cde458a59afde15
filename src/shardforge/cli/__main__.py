"""``python -m shardforge.cli``: the ``shardforge`` command."""

import sys

from shardforge.cli.main import main

sys.exit(main())
