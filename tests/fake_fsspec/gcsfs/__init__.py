"""A stand-in for gcsfs in the tests: ``gs://BUCKET/PATH`` is the local directory
``$SHARDFORGE_FAKE_GCS_ROOT/BUCKET/PATH`` (nothing leaves the machine).

It is fsspec's DirFileSystem over the local disk with gcsfs's class name and protocols,
so fsspec's registry (``gs`` -> ``gcsfs.GCSFileSystem``) finds it when this folder is on
``sys.path`` / ``PYTHONPATH`` (also in Ray's workers). Directories are created on write,
as an object store has none.
"""

from __future__ import annotations

import os

from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

ROOT_ENV = "SHARDFORGE_FAKE_GCS_ROOT"


class GCSFileSystem(DirFileSystem):
    """gcsfs's filesystem, faked over ``$SHARDFORGE_FAKE_GCS_ROOT``; options are kept in
    ``self.options`` (a test can check what the URL query passed)."""

    protocol = ("gs", "gcs")
    cachable = False

    def __init__(self, **options) -> None:
        super().__init__(path=os.environ[ROOT_ENV], fs=LocalFileSystem(auto_mkdir=True))
        self.options = options

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        for prefix in ("gs://", "gcs://"):
            if path.startswith(prefix):
                path = path[len(prefix):]
        return path.rstrip("/")
