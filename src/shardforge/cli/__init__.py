"""Layer: cli (top). The ``shardforge`` command and the Ray job entry points' argument
parsing; it may import every layer below and nothing imports it."""

from shardforge.cli.main import main

__all__ = ["main"]
