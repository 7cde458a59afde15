"""Reading PyTorch files (checkpoints, weights) without running code from them.

Every ``torch.load`` in shardforge goes through :func:`load_torch_bytes`: it uses
``weights_only=True``, so a file can hold tensors and plain Python types (dict, list, tuple,
str, int, float, bool, None) but never an object whose unpickling runs code. A file that
holds anything else is refused with one line (:class:`UnsafeTorchFileError`) naming the
file, what it holds and the fix; there is no fallback to unsafe loading.

:func:`plain_state` converts what shardforge itself saves (numpy scalars and arrays among
tensors and plain containers) so that its own checkpoints always load that way.
"""

from __future__ import annotations

import io
import pickle
import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_GLOBAL_RE = re.compile(r"(Unsupported global: GLOBAL [^\s]+|Unsupported operand [^\s]+|"
                        r"Trying to call reduce for [^\s]+)")
_FIX = ("if you wrote it and trust it, re-save it holding only tensors and plain types "
        "(torch.save({'model': model.state_dict(), ...})); shardforge never loads "
        "pickled objects")


class UnsafeTorchFileError(ValueError):
    """A PyTorch file holds pickled objects that a weights-only load refuses."""


class TorchFileError(ValueError):
    """A PyTorch file cannot be read at all (truncated, not a torch file)."""


def load_torch_bytes(data: bytes, where: str,
                     map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(data, weights_only=True)``; ``where`` names the file in errors.

    Raises :class:`UnsafeTorchFileError` when the file holds anything but tensors and plain
    types (the unpickler stops before any of it runs), :class:`TorchFileError` when it is
    not a readable torch file. Both are ValueErrors with one line: file, why, fix.
    """
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL_RE.search(str(exc))
        what = found.group(1) if found else str(exc).strip().splitlines()[0][:200]
        raise UnsafeTorchFileError(f"{where}: refused to load: it holds pickled objects, "
                                   f"not only tensors and plain types ({what}); {_FIX}") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise TorchFileError(f"{where}: not a readable PyTorch file ({type(exc).__name__}: "
                             f"{msg}); write it with torch.save or point at the right "
                             "file") from None


def plain_state(obj: Any, where: str = "state") -> Any:
    """A copy of ``obj`` that a weights-only load accepts: numpy scalars become Python
    numbers, numpy arrays become tensors, tuples/lists/dicts are copied recursively;
    tensors, str, int, float, bool and None pass. TypeError naming the key path for any
    other object (e.g. a dataclass: store ``asdict(...)`` instead)."""
    import numpy as np
    import torch

    if obj is None or isinstance(obj, (bool, int, float, str, bytes, torch.Tensor,
                                       torch.dtype, torch.device, torch.Size)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        out = {k: plain_state(v, f"{where}[{k!r}]") for k, v in obj.items()}
        return OrderedDict(out) if isinstance(obj, OrderedDict) else out
    if isinstance(obj, (list, tuple)):
        items = [plain_state(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}: a "
                    "checkpoint stores only tensors, numpy values and plain types (dict, "
                    "list, str, numbers); convert it (e.g. dataclasses.asdict) before saving")
