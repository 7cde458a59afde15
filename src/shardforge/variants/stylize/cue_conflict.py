"""A demo-scale cue-conflict set: the shape of one demo class, the texture of another.

The analogue of Geirhos et al.'s cue-conflict stimuli (ICLR 2019, Sec. 2.2) for the
built-in demo (:mod:`shardforge.sources.demo`): for every ordered pair of different classes
(A, B) and ``per_pair`` instances, the demo renderer draws class A's shape filled with class
B's texture, on a ``side`` x ``side`` canvas, as in a val image (random background, random
placement). Files: ``OUT/A/A<i>-B<i>.png`` (the names :mod:`shardforge.variants.stylize.shape_bias`
reads). Instance ``i`` uses render index ``INDEX_BASE + i`` of the val split, so no stimulus
repeats a demo image; for a given ``i`` the shape's placement is the same for every texture.
"""

from __future__ import annotations

import dataclasses
import io
import os

from shardforge.sources.demo import DemoSpec, render_demo_image
from shardforge.storage import replace_durably

INDEX_BASE = 1_000_000
SIDE = 224  # the paper's stimuli are 224 x 224


def generate_cue_conflict(out: str, spec: DemoSpec = DemoSpec(),  # noqa: B008
                          per_pair: int = 4, side: int = SIDE) -> dict:
    """Write the cue-conflict PNGs for ``spec``'s classes under ``out``; return a summary
    ``{"dir", "classes", "stimuli", "per_pair", "side"}``. Deterministic; files already
    holding the same bytes are left alone, and stimulus-named PNGs left by an earlier call
    with other arguments are removed, so ``out`` holds exactly this set."""
    if per_pair < 1:
        raise ValueError(f"per_pair must be >= 1, got {per_pair}")
    square = dataclasses.replace(spec, min_side=side, max_side=side)
    classes = spec.classes
    count = 0
    _remove_stale(out, {f"{s}{i}-{t}{i}.png" for s in classes for t in classes if s != t
                        for i in range(per_pair)})
    for shape in classes:
        folder = os.path.join(out, shape)
        os.makedirs(folder, exist_ok=True)
        for texture in classes:
            if texture == shape:
                continue
            for i in range(per_pair):
                img, _ = render_demo_image(square, "val", shape, INDEX_BASE + i, texture=texture)
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                _write_if_changed(os.path.join(folder, f"{shape}{i}-{texture}{i}.png"),
                                  buf.getvalue())
                count += 1
    return {"dir": out, "classes": classes, "stimuli": count, "per_pair": per_pair, "side": side}


def _remove_stale(out: str, keep: set[str]) -> None:
    """Delete ``out/*/SHAPE<i>-TEXTURE<j>.png`` files whose names are not in ``keep``."""
    from shardforge.variants.stylize.shape_bias import parse_stimulus_name

    if not os.path.isdir(out):
        return
    for folder in os.listdir(out):
        path = os.path.join(out, folder)
        if not os.path.isdir(path):
            continue
        for name in os.listdir(path):
            if name not in keep and parse_stimulus_name(name) is not None:
                os.remove(os.path.join(path, name))


def _write_if_changed(path: str, data: bytes) -> None:
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    replace_durably(tmp, path)
