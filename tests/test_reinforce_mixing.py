"""Reinforcement with MixUp/CutMix (ml-dr's randaug_mixing setting) end to end: build,
replay the mixed views pixel-exactly, reproduce the stored teacher top-K, train from it."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_reinforce import _save_teacher

from shardforge.augment import (
    AugPolicy,
    apply_params,
    image_rng,
    params_from_columns,
    sample_params,
)
from shardforge.catalog.variant import run_reinforcement
from shardforge.layout.dataset import open_dataset
from shardforge.layout.reader import RangeReader
from shardforge.models.reference import parse_member
from shardforge.ops.normalize import normalize_images
from shardforge.variants.reinforce.engine import ReinforceConfig
from shardforge.variants.reinforce.transform import decode_stored

MIX = AugPolicy(size=32, mixup_p=0.5, cutmix_p=0.5)     # ml-dr: alpha 1, lambda / 2, p 0.5


@pytest.fixture(scope="module")
def mixed(demo_dataset, ray_local, tmp_path_factory):
    teacher = _save_teacher(demo_dataset, str(tmp_path_factory.mktemp("mix-teacher")), 1)
    out = tmp_path_factory.mktemp("mix") / "out"
    summary = run_reinforcement(ReinforceConfig(
        parent=demo_dataset, name="demo-mix", out=str(out), teachers=(parse_member(teacher),),
        num_augs=4, top_k=3, policy=MIX, batch_size=16, num_actors=1), log=io.StringIO())
    return str(out), summary, teacher


def _tables(out: str) -> list[tuple[str, pq.Table]]:
    d = os.path.join(out, "reinforce")
    return [(f, pq.read_table(os.path.join(d, f))) for f in sorted(os.listdir(d))]


def _source(index, reader, p: int) -> np.ndarray:
    (blob,) = reader.read(index.shard[[p]], index.offset[[p]], index.size[[p]])
    return decode_stored(blob)


def test_records_are_the_seeded_draws_with_partners_in_the_shard(demo_dataset, mixed):
    out, summary, _ = mixed
    assert summary["reinforce"]["policy"]["mixup_div_by"] == 2.0
    index = open_dataset(demo_dataset).split("train")
    reader = RangeReader(index.shard_urls)
    mixes = 0
    for s, (_, table) in enumerate(_tables(out)):
        cols = {c: table[c].to_numpy() for c in table.column_names if c.startswith("aug_")}
        records = params_from_columns(cols, MIX)
        positions = np.flatnonzero(index.shard == s)
        sizes = np.array([_source(index, reader, int(p)).shape[1::-1] for p in positions])
        keys = table["key"].to_pylist()
        for n in range(0, len(keys), 4):         # 4 augmentations per image, in order
            p = int(positions[np.flatnonzero(index.key[positions] == keys[n])[0]])
            src = _source(index, reader, p)
            drawn = sample_params(MIX, src.shape[1], src.shape[0], image_rng(0, keys[n]), 4,
                                  partner_sizes=sizes)
            # pool index -> position in the tar (no rejects here: the same numbers)
            assert drawn.tobytes() == records[n:n + 4].tobytes()
        mixes += int((records["partner"] >= 0).sum())
        assert ((records["partner"] >= -1) & (records["partner"] < len(positions))).all()
    assert mixes > 0


def test_replayed_mixed_views_give_the_stored_teacher_top_k(demo_dataset, mixed):
    """The teacher on the replayed mixed view (own view + the partner's own view, MixUp then
    CutMix) reproduces the stored top-K: generation and replay made the same pixels."""
    from shardforge.variants.reinforce.teacher import load_ensemble

    out, _, teacher = mixed
    parent = open_dataset(demo_dataset)
    index = parent.split("train")
    reader = RangeReader(index.shard_urls)
    model = load_ensemble([parse_member(teacher)], parent.classes, "demo")
    torch.set_num_threads(1)
    checked = 0
    for s, (_, table) in enumerate(_tables(out)):
        cols = {c: table[c].to_numpy() for c in table.column_names if c.startswith("aug_")}
        records = params_from_columns(cols, MIX)
        first = int(np.flatnonzero(index.shard == s)[0])
        where = {k: p for p, k in enumerate(index.key.tolist())}
        for r in np.flatnonzero(records["partner"] >= 0)[:6].tolist():
            image = _source(index, reader, where[table["key"][r].as_py()])
            partner = _source(index, reader, first + int(records[r]["partner"]))
            view = apply_params(image, records[r], MIX, partner=partner)
            top = torch.topk(model(normalize_images(view[None]))[0], 3)
            assert top.indices.tolist() == table["topk_indices"][r].as_py()
            np.testing.assert_allclose(top.values.numpy(),
                                       np.array(table["topk_probs"][r].as_py(), np.float32),
                                       rtol=2e-3, atol=1e-3)
            checked += 1
    assert checked >= 6


def test_replay_loader_yields_exactly_the_stored_mixed_views(demo_dataset, mixed):
    from shardforge.stream.replay import ReplayStream, load_reinforced_split
    from shardforge.stream.wds_loader import WdsLoader

    out, summary, _ = mixed
    parent = open_dataset(demo_dataset)
    index = parent.split("train")
    reader = RangeReader(index.shard_urls)
    stored = load_reinforced_split(out, summary["reinforce"], parent)
    stream = ReplayStream(parent, stored, MIX, 10, batch_size=8, rank=0, world_size=1,
                          seed=5, p_reinforce=1.0)
    matched = mixing = 0
    for views, _labels, _targets, ids in WdsLoader(stream, num_workers=1):
        for view, p in zip(views, ids.tolist(), strict=True):
            image = _source(index, reader, p)
            first = int(np.flatnonzero(index.shard == index.shard[p])[0])
            candidates = []
            for row in stored.params[p]:
                q = int(row["partner"])
                partner = _source(index, reader, first + q) if q >= 0 else None
                candidates.append((q >= 0, apply_params(image, row, MIX, partner=partner)))
            hits = [m for m, c in candidates if torch.equal(c, view)]
            assert hits, f"sample {p}: the replayed view is none of its stored augmentations"
            matched += 1
            mixing += hits[0]
    assert matched == 60 and mixing > 0


@pytest.mark.slow
def test_train_two_epochs_from_mixed_reinforcement(mixed, tmp_path):
    from shardforge.train.experiment import train_recipe

    out, _, _ = mixed
    config = os.path.join(os.path.dirname(__file__), "..", "jobs", "configs", "demo_cpu.yaml")
    r = train_recipe(config, out, str(tmp_path), "mix",
                     overrides=("training.epochs=2", "scaling.num_workers=1",
                                "data.num_workers=1", "optim.lr_peak_epoch=1"))
    assert r.final["epoch"] == 2 and r.final["train_samples"] == 60
    assert np.isfinite(r.final["train_loss"])


def test_an_old_build_is_not_refused_for_mixing_fields_it_never_used(tmp_path):
    """A non-mixing build recorded before ml-dr's mixing defaults (mixup_alpha 0.2, no
    mixup_div_by) is the same output: the rewrite guard is not asked; a mixing one is."""
    import json

    from shardforge.build.hooks import BuildHooks
    from shardforge.variants.reinforce.engine import check_out

    asked = []
    hooks = BuildHooks(lambda out, why: asked.append(why))
    old = AugPolicy(size=32).to_dict()
    old["mixup_alpha"] = 0.2
    del old["mixup_div_by"]
    (tmp_path / "summary.json").write_text(json.dumps({"params": {"policy": old, "seed": 0}}))
    check_out(str(tmp_path), {"policy": AugPolicy(size=32).to_dict(), "seed": 0}, hooks)
    assert asked == []
    check_out(str(tmp_path), {"policy": MIX.to_dict(), "seed": 0}, hooks)
    assert len(asked) == 1 and "policy" in asked[0]
