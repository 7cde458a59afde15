"""The observer model of a distillation: where it comes from, its class order, its identity.

An observer is referenced by

* a jobs/train.py checkpoint (``state.pt``, a ``checkpoint_epochNNNN`` directory or a run
  directory: its newest checkpoint). Its class order is the ``classes`` list the
  checkpoint records (older checkpoints without it: the ``summary.json`` of the dataset it
  was trained on, ``state["dataset"]``); or
* a model constructor (``small_cnn`` or a torchvision name such as ``resnet18``) plus a
  local state-dict file (``weights``). Such a file carries no class names, so
  ``classes`` must say the order: ``sorted`` (class ``i`` is the ``i``-th class name in
  sorted order: the ImageFolder convention, which torchvision's ImageNet weights follow)
  or a file listing the class names (one per line, or a JSON list).

The class order must equal the dataset's (:func:`check_class_order`): an observer scoring
class ``i`` with another class's logit silently selects the wrong crops, the most reported
reproduction failure of RDED (Sun et al. 2024, reference issues #3, #4, #9, #10).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shardforge.storage import resolve

if TYPE_CHECKING:   # torch is imported where a model is loaded: the schema needs none
    from torch import nn

SORTED = "sorted"


@dataclass(frozen=True)
class ObserverRef:
    """Where an observer comes from: ``location`` is a checkpoint reference, or a model
    constructor name when ``weights`` is given (then ``classes`` is ``sorted`` or a file)."""

    location: str
    weights: str | None = None
    classes: str | None = None

    @property
    def is_checkpoint(self) -> bool:
        return self.weights is None


@dataclass(frozen=True)
class Observer:
    """A loaded observer: the model (CPU, eval mode) and its class names in logit order."""

    model: nn.Module
    classes: tuple[str, ...]


def parse_member(text: str, classes: str | None = "sorted") -> ObserverRef:
    """``PATH`` (a jobs/train.py checkpoint, run dir or state.pt) or ``ARCH=WEIGHTS`` (a
    ``small_cnn``/torchvision constructor and a local state-dict file, whose class order is
    ``classes``: ``sorted`` or a file of class names)."""
    arch, sep, weights = text.partition("=")
    if sep:
        if not arch or not weights:
            raise ValueError(f"teacher {text!r}: write ARCH=WEIGHTS_FILE (e.g. "
                             "resnet50=/weights/rn50.pth) or a checkpoint path")
        return ObserverRef(arch, weights, classes)
    return ObserverRef(text)


def _class_list_file(path: str) -> tuple[str, ...]:
    text = resolve(path).read_bytes().decode("utf-8")
    stripped = text.strip()
    if stripped.startswith("["):
        names = json.loads(stripped)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"observer class file {path}: expected a JSON list of class "
                             "names or one name per line")
        return tuple(names)
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _checkpoint_classes(state: dict, location: str) -> tuple[str, ...]:
    classes = state.get("classes")
    if classes:
        return tuple(classes)
    dataset = state.get("dataset")
    if dataset:
        from shardforge.layout.files import SUMMARY_FILE

        summary = json.loads(resolve(dataset).join(SUMMARY_FILE).read_bytes())
        if summary.get("classes"):
            return tuple(summary["classes"])
    raise ValueError(f"observer checkpoint {location!r} records no class names and the "
                     f"dataset it was trained on ({dataset!r}) cannot tell them; retrain it "
                     "with jobs/train.py (checkpoints record their classes)")


def load_observer(ref: ObserverRef, dataset_classes: tuple[str, ...] | list[str]) -> Observer:
    """Load the observer ``ref`` names; its classes come from the checkpoint, the
    ``sorted`` rule applied to ``dataset_classes``, or the class file ``ref.classes``.

    Raises ValueError naming the reference when it cannot be loaded or names no classes.
    The class order is not checked here (see :func:`check_class_order`)."""
    from shardforge.models.archs import build_model
    from shardforge.models.checkpoint import load_state, model_from_state
    from shardforge.torch_files import load_torch_bytes

    if ref.is_checkpoint:
        state = load_state(ref.location)
        return Observer(model_from_state(state), _checkpoint_classes(state, ref.location))
    if not ref.classes:
        raise ValueError(f"observer {ref.location!r} with weights {ref.weights!r}: a weights "
                         "file records no class order; set observer_classes to 'sorted' "
                         "(ImageFolder order, as torchvision's ImageNet weights) or to a file "
                         "of class names")
    classes = (tuple(sorted(dataset_classes)) if ref.classes == SORTED
               else _class_list_file(ref.classes))
    model = build_model(ref.location, len(classes))
    sd = load_torch_bytes(resolve(ref.weights).read_bytes(), f"observer weights {ref.weights}")
    model.load_state_dict(sd.get("model", sd) if isinstance(sd, dict) else sd)
    return Observer(model.eval(), classes)


def load_checked(ref: ObserverRef, dataset_classes: tuple[str, ...] | list[str], what: str,
                 dataset: str) -> nn.Module:
    """The one way to load a model reference for use on a dataset (an RDED observer, a
    reinforcement teacher, a distillation teacher): :func:`load_observer`, then its class
    order checked against ``dataset_classes`` (:func:`check_class_order`; ``what`` and
    ``dataset`` name the two in the error). Returns the model (CPU, eval mode)."""
    loaded = load_observer(ref, tuple(dataset_classes))
    check_class_order(loaded.classes, dataset_classes, what, dataset)
    return loaded.model


def check_class_order(observer_classes: tuple[str, ...] | list[str],
                      dataset_classes: tuple[str, ...] | list[str], observer: str,
                      dataset: str) -> None:
    """Raise ValueError unless the observer's logit ``i`` is the dataset's class ``i`` for
    every ``i`` (same names, same order). The message names both orders and the fix."""
    obs, data = list(observer_classes), list(dataset_classes)
    if obs == data:
        return
    if sorted(obs) == sorted(data):
        first = next(i for i, (a, b) in enumerate(zip(obs, data, strict=True)) if a != b)
        problem = (f"the same {len(obs)} classes in another order (first difference at "
                   f"index {first}: observer {obs[first]!r}, dataset {data[first]!r})")
    else:
        missing, extra = sorted(set(data) - set(obs)), sorted(set(obs) - set(data))
        problem = (f"different classes ({len(obs)} vs {len(data)}; dataset classes the "
                   f"observer lacks: {missing[:5]}; observer classes not in the dataset: "
                   f"{extra[:5]})")
    raise ValueError(
        f"class order mismatch between observer {observer} and dataset {dataset}: "
        f"{problem}. Observer order: {_short(obs)}; dataset order: {_short(data)}. Use an "
        "observer trained on this dataset (jobs/train.py records its classes), or re-ingest "
        "the dataset with the observer's class order; for a weights file set "
        "observer_classes to a file listing its classes in logit order")


def _short(names: list[str], k: int = 6) -> str:
    return "[" + ", ".join(names[:k]) + (", ...]" if len(names) > k else "]")


def observer_identity(ref: ObserverRef) -> dict:
    """What the catalog records about the observer: its reference, the resolved file and
    the sha256 of that file (the checkpoint's ``state.pt`` or the weights file)."""
    from shardforge.models.checkpoint import find_state_file

    url = find_state_file(ref.location) if ref.is_checkpoint else resolve(ref.weights).url
    identity = {"observer": ref.location, "observer_file": url,
                "observer_sha256": resolve(url).sha256()}
    if not ref.is_checkpoint:
        identity["observer_classes"] = ref.classes
    return identity
