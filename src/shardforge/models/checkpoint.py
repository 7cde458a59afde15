"""Training checkpoints: one ``state.pt`` per ``checkpoint_epochNNNN`` directory of a run.

A run directory (``STORAGE/NAME``, local or ``s3://``) holds ``checkpoint_epochNNNN/state.pt``
(NNNN = epochs completed), ``metrics.jsonl`` and, under Ray Train, Ray's own run files.
``state.pt`` is a dict: ``format``, ``epochs_done``, ``model`` (state dict of the bare
model), ``optimizer``, ``scaler``, ``loader`` (data-order state), ``model_spec`` (arch,
num_classes, blurpool, width), ``classes``, ``config``, ``dataset``, ``metrics`` (history).
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import TYPE_CHECKING

from shardforge.storage import replace_durably, resolve

if TYPE_CHECKING:   # torch only where a state is saved or loaded: finding one needs none
    import torch
    from torch import nn

STATE_FILE = "state.pt"
STATE_FORMAT = 1
_CKPT_RE = re.compile(r"^checkpoint_epoch(\d{4,})$")


def checkpoint_name(epochs_done: int) -> str:
    """``checkpoint_epochNNNN``: the directory name of the checkpoint after ``epochs_done`` epochs."""
    return f"checkpoint_epoch{epochs_done:04d}"


def save_state(directory: str, state: dict) -> str:
    """Write ``state`` to ``DIRECTORY/state.pt`` (local dir, fsync + atomic rename); return the path.

    The state is stored as tensors and plain types only (numpy values converted; TypeError
    naming the key for any other object), so :func:`load_state` reads it weights-only."""
    import torch

    from shardforge.torch_files import plain_state

    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, STATE_FILE)
    tmp = path + ".tmp"
    torch.save(plain_state(state, STATE_FILE), tmp)
    replace_durably(tmp, path)
    return path


def latest_checkpoint(run_dir: str) -> str | None:
    """URL of the newest complete ``checkpoint_epochNNNN/state.pt`` in ``run_dir``, or None."""
    root = resolve(run_dir)
    best: tuple[int, str] | None = None
    for path in root.list_files(recursive=True):
        rel = posixpath.relpath(path, root.path)
        parts = rel.split("/")
        if len(parts) == 2 and parts[1] == STATE_FILE and (m := _CKPT_RE.match(parts[0])):
            epoch = int(m.group(1))
            if best is None or epoch > best[0]:
                best = (epoch, root.child_url(path))
    return best[1] if best else None


def find_state_file(path: str) -> str:
    """Resolve a checkpoint reference to a ``state.pt`` URL.

    ``path`` may be a ``state.pt`` file, a ``checkpoint_epochNNNN`` directory or a run
    directory (its newest checkpoint). Raises FileNotFoundError naming ``path``.
    """
    loc = resolve(path)
    if loc.path.endswith(".pt") and loc.exists():
        return loc.url
    direct = loc.join(STATE_FILE)
    if direct.exists():
        return direct.url
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint at {path!r}: expected a state.pt, a "
                                "checkpoint_epochNNNN directory or a run directory holding them")
    return latest


def load_state(path: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint (any form :func:`find_state_file` accepts); ValueError if not ours.

    Weights-only: a file holding pickled objects is refused
    (:class:`shardforge.torch_files.UnsafeTorchFileError`, a ValueError); nothing in it runs."""
    from shardforge.torch_files import load_torch_bytes

    url = find_state_file(path)
    state = load_torch_bytes(resolve(url).read_bytes(), f"checkpoint {url}", map_location)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{url} is not a shardforge training checkpoint (format "
                         f"{STATE_FORMAT}); was it written by jobs/train.py?")
    return state


def model_from_state(state: dict) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (CPU, eval mode)."""
    from shardforge.models.archs import build_model

    spec = state["model_spec"]
    model = build_model(spec["arch"], spec["num_classes"], blurpool=spec.get("blurpool", False),
                        width=spec.get("width", 32))
    model.load_state_dict(state["model"])
    return model.eval()
