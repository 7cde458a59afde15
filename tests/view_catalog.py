"""A small catalog for the `shardforge view` tests: a toy demo ingest and its variants
(CUDA, Fourier-stylized, reinforced with a random teacher), plus a damaged copy.

Builds on the Ray the caller started (the ``ray_local`` fixture). About 10 s on 2 CPUs.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import textwrap

KEY_ENV = "SF_VIEW_TEST_KEY"
CARDS = {
    "toy": """
        name: toy
        description: The demo generator at toy size.
        source:
          demo: {num_classes: 10, train_per_class: 3, val_per_class: 1, max_side: 200}
        pipeline: {name: ingest, params: {max_res: 64, shard_size: 8}}
        licence: CC0-1.0
        """,
    "toy-cuda": f"""
        name: toy-cuda
        description: toy made unlearnable.
        source: {{dataset: toy}}
        pipeline:
          name: unlearnable
          params: {{method: cuda}}
          secrets: {{private_key: {{env: {KEY_ENV}}}}}
        licence: CC0-1.0
        """,
    "toy-stylized": """
        name: toy-stylized
        description: toy with Fourier-swapped procedural styles.
        source: {dataset: toy}
        pipeline:
          name: stylize
          params: {method: fourier, styles: "builtin:demo", alpha: 1.0, seed: 0, resize: 64,
                   crop: 56, splits: [train]}
        licence: CC0-1.0
        """,
}
#: Augmentations stored per image and teacher classes kept by the reinforced build.
NUM_AUGS, TOP_K = 4, 5
#: Rejects written into the damaged copy (the dataset page lists them).
REJECTS = [{"origin": "train/circle/bad.JPEG", "reason": "DecodeError: not an image",
            "split": "train"},
           {"origin": "train/star/huge.JPEG", "reason": "DecompressionBomb: 1e9 pixels",
            "split": "train"}]


def build_view_catalog(base: str) -> dict:
    """Build toy, toy-cuda, toy-stylized and toy-plus (reinforced) into the catalog home
    ``base/home``, and register ``toy-broken``: a copy of toy whose first train tar is
    deleted and whose rejects.jsonl lists :data:`REJECTS`. Returns ``{"home", "builds"
    (name -> Build), "missing_tar" (the deleted tar's path)}``."""
    import torch

    from shardforge import catalog
    from shardforge.augment import AugPolicy
    from shardforge.catalog.builder import build_dataset
    from shardforge.catalog.variant import run_reinforcement
    from shardforge.models.archs import build_model
    from shardforge.models.checkpoint import STATE_FORMAT, save_state
    from shardforge.models.reference import parse_member
    from shardforge.variants.reinforce.engine import ReinforceConfig

    home, cards = os.path.join(base, "home"), os.path.join(base, "cards")
    os.makedirs(cards, exist_ok=True)
    for name, text in CARDS.items():
        with open(os.path.join(cards, f"{name}.yaml"), "w") as f:
            f.write(textwrap.dedent(text))
    os.environ.setdefault(KEY_ENV, "view-test-key-0123456789abcdef")
    for name in CARDS:
        build_dataset(name, home=home, cards_dir=cards, log=io.StringIO())

    torch.manual_seed(0)
    spec = {"arch": "small_cnn", "num_classes": 10, "blurpool": False, "width": 8}
    teacher = os.path.join(base, "teacher")
    os.makedirs(teacher, exist_ok=True)
    save_state(teacher, {"format": STATE_FORMAT, "model": build_model(**spec).state_dict(),
                         "model_spec": spec, "classes": list(catalog.get("toy", home).classes),
                         "epochs_done": 1})
    config = ReinforceConfig(parent="toy", name="toy-plus", out=None,
                             teachers=(parse_member(teacher),), num_augs=NUM_AUGS, top_k=TOP_K,
                             policy=AugPolicy(size=32), batch_size=16, num_actors=1)
    run_reinforcement(config, catalog_home=home, log=io.StringIO())

    toy = catalog.get("toy", home)
    broken = os.path.join(base, "toy-broken")
    shutil.copytree(toy.out, broken)
    with open(os.path.join(broken, "summary.json")) as f:
        summary = json.load(f)
    summary["out"] = broken
    missing = os.path.join(broken, "wds", "toy-train-000000.tar")
    os.remove(missing)
    with open(os.path.join(broken, "rejects.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in REJECTS)
    catalog.register_build(home, "toy-broken", summary)
    builds = {b.name: b for b in catalog.list(home=home)}
    return {"home": home, "builds": builds, "missing_tar": missing}
