"""The unlearnable-dataset job (``pipelines/unlearnable.py``): key input, output location, run.

The private key comes from a file or an environment variable, never from a command-line
value (shell history, ``ps``). It reaches the workers only inside the variant's transform;
the summary, ``summary.json`` and the catalog hold its fingerprint only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from shardforge.catalog.variant import default_out
from shardforge.variants.cuda.spec import check_key, make_variant, secrets_of


def read_key(*, key_file: str | None = None, key_env: str | None = None) -> str:
    """The private key from ``key_file`` (surrounding whitespace stripped) or the environment
    variable ``key_env`` (exactly one of them). ValueError naming the source when it is
    missing, unreadable or shorter than the minimum."""
    if (key_file is None) == (key_env is None):
        raise ValueError("give the private key with exactly one of --key-file PATH or "
                         "--key-env VAR")
    if key_file is not None:
        path = Path(os.path.expanduser(key_file))
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"--key-file {path}: cannot read it ({exc.strerror}); create it "
                             "with the key, readable by you only (chmod 600)") from None
        return check_key(value, f"the key in --key-file {path}")
    value = os.environ.get(key_env or "", "")
    if not value:
        raise ValueError(f"--key-env {key_env}: the environment variable is not set; export "
                         f"{key_env}=KEY (at least 16 random characters) first")
    return check_key(value, f"the key in ${key_env}")


def build_unlearnable(parent: str, name: str, key: str, params: Mapping[str, Any], *,
                      out: str | None = None, ray_address: str | None = None,
                      home: str | os.PathLike | None = None, register: bool = True,
                      log: TextIO | None = None) -> dict:
    """Run the CUDA variant of ``parent`` into dataset ``name``; return the build summary.

    ``params``: the pipeline's parameters (``kernel_size``, ``pb``, ``p``, ``grayscale``;
    None means the default). ``out`` defaults to :func:`default_out`. Resumable: rerunning
    with the same arguments reuses finished shards.
    """
    from shardforge.catalog.variant import run_variant

    variant = make_variant(dict(params), secrets_of(key))
    home_str = None if home is None else os.fspath(home)
    out = out or default_out(home_str, name, parent, variant.params)
    return run_variant(parent, variant, name, out, ray_address=ray_address,
                       register=register, catalog_home=home_str,
                       secrets={"private_key": key}, log=log)
