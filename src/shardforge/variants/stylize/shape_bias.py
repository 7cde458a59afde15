"""Shape bias on cue-conflict stimuli (Geirhos et al., ICLR 2019, Sec. 2.2 and 3.1).

A cue-conflict stimulus has the shape of one category and the texture of another; its file
is named ``SHAPE<i>-TEXTURE<j>.png`` (e.g. ``cat3-elephant1.png``), in any sub-folder.
Stimuli whose shape and texture are the same category are excluded. A model's decision is
the category with the highest score; an ImageNet (1000-way) model's softmax is mapped to the
16 categories by the mean probability over each category's ImageNet indices
(:data:`IMAGENET_16`); a model trained on the categories themselves (the demo) is read
directly. Then::

    shape bias = shape hits / (shape hits + texture hits)

where a hit is a decision for the stimulus's shape (resp. texture) category; decisions for
any other category count in neither.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: The 16 entry-level categories and their ImageNet-1k indices, as precomputed in Geirhos et
#: al.'s model-vs-human toolbox (``modelvshuman/helper/human_categories.py``,
#: ``HumanCategories.<category>_indices``; WordNet hyponyms of each category, minus the
#: classes the authors excluded). Categories in sorted order (the toolbox's order).
IMAGENET_16: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 80, 81, 82, 83, 87, 88,
             89, 90, 91, 92, 93, 94, 95, 96, 98, 99, 100, 127, 128, 129, 130, 131, 132, 133,
             135, 136, 137, 138, 139, 140, 141, 142, 143, 144, 145),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    # 152..268 without 192, 204, 227, 242, 251, 258, 260, 264
    "dog": tuple(i for i in range(152, 269)
                 if i not in (192, 204, 227, 242, 251, 258, 260, 264)),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}
IMAGENET_CLASSES = 1000

_NAME_RE = re.compile(r"^([A-Za-z_]+?)(\d+)-([A-Za-z_]+?)(\d+)\.png$")


@dataclass(frozen=True)
class Stimulus:
    """One cue-conflict image: its path and its shape and texture categories."""

    path: str
    shape: str
    texture: str


def parse_stimulus_name(name: str) -> tuple[str, str] | None:
    """``(shape, texture)`` from ``SHAPE<i>-TEXTURE<j>.png``; None for other names."""
    m = _NAME_RE.match(name)
    return (m.group(1), m.group(3)) if m else None


def list_stimuli(directory: str) -> tuple[list[Stimulus], int]:
    """Cue-conflict stimuli below ``directory`` (recursive, sorted by path) and the number of
    same-class ones excluded. Files not named ``SHAPE<i>-TEXTURE<j>.png`` are ignored.

    Raises FileNotFoundError when ``directory`` is missing or holds no stimulus.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--stimuli {directory!r} is not a directory; generate demo "
                                "stimuli with experiments/stylize_effect.py or pass the "
                                "cue-conflict folder")
    kept: list[Stimulus] = []
    excluded = 0
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            parsed = parse_stimulus_name(name)
            if parsed is None:
                continue
            if parsed[0] == parsed[1]:
                excluded += 1
                continue
            kept.append(Stimulus(os.path.join(root, name), *parsed))
    if not kept:
        raise FileNotFoundError(f"no cue-conflict stimulus (SHAPE<i>-TEXTURE<j>.png with "
                                f"different categories) below {directory!r}")
    return kept, excluded


def category_mapping(classes: Sequence[str], num_outputs: int,
                     categories: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Output indices per decision category.

    A 1000-way model: :data:`IMAGENET_16`. A model whose ``classes`` contain every category
    in ``categories`` (e.g. the demo's): each of its classes maps to its own output index.
    Raises ValueError naming the categories the model cannot score.
    """
    if num_outputs == IMAGENET_CLASSES:
        missing = sorted(set(categories) - set(IMAGENET_16))
        if missing:
            raise ValueError(f"stimulus categories {missing} are not among the 16 categories "
                             f"({', '.join(IMAGENET_16)}) of an ImageNet model")
        return dict(IMAGENET_16)
    missing = sorted(set(categories) - set(classes))
    if missing or len(classes) != num_outputs:
        raise ValueError(f"the model's classes {list(classes)} do not cover the stimulus "
                         f"categories {missing}; evaluate a model trained on those categories "
                         "or a 1000-way ImageNet model")
    return {c: (i,) for i, c in enumerate(classes)}


def category_probabilities(probs: np.ndarray,
                           mapping: Mapping[str, Sequence[int]]) -> np.ndarray:
    """(N, C) mean probability over each category's indices (columns in ``mapping`` order)."""
    return np.stack([probs[:, list(idx)].mean(axis=1) for idx in mapping.values()], axis=1)


def shape_bias(shapes: Sequence[str], textures: Sequence[str],
               decisions: Sequence[str]) -> dict:
    """Shape bias of ``decisions`` on stimuli with the given shape and texture categories.

    Same-class stimuli (shape == texture) are skipped. Returns ``shape_bias`` (None when
    nothing hit either cue), ``shape_hits``, ``texture_hits``, ``other`` (decisions for
    neither), ``stimuli`` (counted), ``excluded_same_class`` and ``per_shape``:
    ``{category: shape bias}`` over the stimuli of that shape.
    """
    if not len(shapes) == len(textures) == len(decisions):
        raise ValueError("shapes, textures and decisions must have the same length")
    hits = {"shape": 0, "texture": 0, "other": 0}
    per: dict[str, list[int]] = {}
    excluded = 0
    for s, t, d in zip(shapes, textures, decisions, strict=True):
        if s == t:
            excluded += 1
            continue
        kind = "shape" if d == s else "texture" if d == t else "other"
        hits[kind] += 1
        counts = per.setdefault(s, [0, 0])
        if kind != "other":
            counts[kind == "texture"] += 1
    cue = hits["shape"] + hits["texture"]
    return {"shape_bias": hits["shape"] / cue if cue else None,
            "shape_hits": hits["shape"], "texture_hits": hits["texture"],
            "other": hits["other"], "stimuli": sum(hits.values()),
            "excluded_same_class": excluded,
            "per_shape": {c: (n[0] / (n[0] + n[1]) if n[0] + n[1] else None)
                          for c, n in sorted(per.items())}}


#: How stimuli reach the model: ``stimuli`` feeds them unchanged at their own size
#: (model-vs-human: the 224 px stimuli, no resize, no crop; its default), ``checkpoint-val``
#: reads them as ``shardforge eval`` reads val (centre crop, resize to the checkpoint's
#: validation resolution: for models trained at another resolution, e.g. the demo's 64 px).
PREPROCESS = ("stimuli", "checkpoint-val")


def _load_images(paths: Sequence[str], res: int | None, crop_ratio: float) -> np.ndarray:
    """uint8 (N, S, S, 3). ``res`` None: the stimuli as they are (all one square size S,
    else ValueError naming the first that differs); else the centre square of
    ``crop_ratio`` x the short side, INTER_AREA resized to ``res`` (FFCV's
    ``CenterCropRGBImageDecoder``, as ``shardforge eval`` reads val)."""
    from PIL import Image

    from shardforge.formats.area import resize_area

    images = []
    for path in paths:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"))
        if res is None:
            if a.shape[0] != a.shape[1] or (images and a.shape != images[0].shape):
                first = images[0].shape if images else a.shape
                raise ValueError(f"stimulus {path} is {a.shape[1]}x{a.shape[0]} px, the set is "
                                 f"{first[1]}x{first[0]}: fed unchanged (model-vs-human), "
                                 "stimuli must share one square size; pass --preprocess "
                                 "checkpoint-val to crop and resize them")
            images.append(a)
            continue
        h, w = a.shape[:2]
        side = int(round(crop_ratio * min(h, w)))
        top, left = (h - side) // 2, (w - side) // 2
        images.append(resize_area(a[top:top + side, left:left + side], (res, res)))
    return np.stack(images) if images else np.empty((0, 1, 1, 3), np.uint8)


def evaluate_shape_bias(checkpoint: str, stimuli: str, res: int | None = None,
                        crop_ratio: float | None = None, batch_size: int = 128,
                        device: str = "auto", preprocess: str = "stimuli") -> dict:
    """Shape bias of a training checkpoint on the cue-conflict stimuli below ``stimuli``.

    ``preprocess`` (:data:`PREPROCESS`): ``stimuli`` (default, model-vs-human's protocol:
    ``modelvshuman/datasets/...``, the 224 px stimuli fed unchanged) or ``checkpoint-val``
    (centre crop ``crop_ratio``, resized to ``res``; both default to the checkpoint config's
    validation settings; ``res``/``crop_ratio`` apply only here). Images are normalised as
    in training. Returns :func:`shape_bias`'s dict plus ``mapping`` (``imagenet16`` or
    ``classes``), ``categories``, ``checkpoint``, ``stimuli_dir``, and the preprocessing
    used: ``preprocess``, ``res`` (the size the model saw), ``crop_ratio`` (None when fed
    unchanged). ValueError for an unknown ``preprocess`` or ``res``/``crop_ratio`` given
    with ``stimuli``.
    """
    import torch

    from shardforge.models.checkpoint import find_state_file, load_state, model_from_state
    from shardforge.ops.normalize import normalize_images

    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess {preprocess!r} is not one of {PREPROCESS}")
    if preprocess == "stimuli" and (res is not None or crop_ratio is not None):
        raise ValueError("--res/--crop-ratio apply to --preprocess checkpoint-val; the "
                         "default feeds the stimuli unchanged (model-vs-human)")
    items, excluded = list_stimuli(stimuli)
    state = load_state(checkpoint)
    if preprocess == "checkpoint-val":
        val_cfg = state.get("config", {}).get("validation", {})
        res = res or int(val_cfg.get("res", 224))
        crop_ratio = crop_ratio or float(val_cfg.get("crop_ratio", 224 / 256))
    num_outputs = int(state["model_spec"]["num_classes"])
    cats = sorted({s.shape for s in items} | {s.texture for s in items})
    mapping = category_mapping(list(state.get("classes", [])), num_outputs, cats)
    names = list(mapping)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    model = model_from_state(state).to(dev)
    decisions: list[str] = []
    seen = res
    with torch.inference_mode():
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            x = torch.from_numpy(_load_images([s.path for s in chunk], res, crop_ratio or 1.0))
            seen = int(x.shape[1])
            x = normalize_images(x.to(dev).permute(0, 3, 1, 2))
            probs = torch.softmax(model(x).float(), dim=1).cpu().numpy()
            scores = category_probabilities(probs, mapping)
            decisions += [names[i] for i in scores.argmax(axis=1)]
    result = shape_bias([s.shape for s in items], [s.texture for s in items], decisions)
    result["excluded_same_class"] += excluded
    result.update(mapping="imagenet16" if num_outputs == IMAGENET_CLASSES else "classes",
                  categories=names, checkpoint=find_state_file(checkpoint),
                  stimuli_dir=stimuli, preprocess=preprocess, res=seen,
                  crop_ratio=crop_ratio)
    return result


def format_shape_bias(r: dict) -> str:
    """Human-readable lines for :func:`evaluate_shape_bias`'s result."""
    bias = "n/a" if r["shape_bias"] is None else f"{r['shape_bias']:.3f}"
    return (f"shape bias {bias} on {r['stimuli']} cue-conflict stimuli in {r['stimuli_dir']} "
            f"({r['excluded_same_class']} same-class excluded; mapping {r['mapping']}, "
            f"{len(r['categories'])} categories; {_preprocessing(r)})\n"
            f"  shape hits {r['shape_hits']}  texture hits {r['texture_hits']}  "
            f"other {r['other']}\n  checkpoint {r['checkpoint']}")


def _preprocessing(r: dict) -> str:
    if r.get("preprocess") == "stimuli":
        return f"stimuli fed unchanged at {r['res']} px (model-vs-human)"
    return f"centre crop {r['crop_ratio']:.3f}, resized to {r['res']} px (checkpoint-val)"


def run_shape_bias_command(args) -> int:
    """Handle ``shardforge eval shape-bias --checkpoint C --stimuli DIR``; exit code 0 or 2."""
    import json
    import sys

    checkpoint = getattr(args, "checkpoint_flag", None)
    if not checkpoint or not getattr(args, "stimuli", None):
        print("shardforge eval shape-bias: error: --checkpoint and --stimuli are required "
              "(e.g. shardforge eval shape-bias --checkpoint RUN_DIR --stimuli DIR)",
              file=sys.stderr)
        return 2
    try:
        result = evaluate_shape_bias(checkpoint, args.stimuli, args.res, args.crop_ratio,
                                     args.batch_size, args.device,
                                     getattr(args, "preprocess", "stimuli"))
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"shardforge eval shape-bias: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, sort_keys=True) if args.json
          else format_shape_bias(result))
    return 0
