"""train_recipe reuse follows the recipe's content: an unchanged recipe reuses the finished
run, an edited one trains a new run beside it (the old one untouched), and the log says
which happened."""

from __future__ import annotations

import io
import os

from helpers import tree_sha256

from shardforge.train.experiment import differences, train_recipe

TINY = """
model: {arch: small_cnn, width: 8, blurpool: false}
scaling: {num_workers: 1, use_gpu: false, cpus_per_worker: 1}
data: {loader: ffcv, num_workers: 1, in_memory: true}
training: {epochs: 1, batch_size: 16, amp: "off", channels_last: false, seed: 0}
optim: {lr: LR, lr_peak_epoch: 0}
resolution: {min_res: 32, max_res: 32, start_ramp: 0, end_ramp: 0}
validation: {batch_size: 100, res: 32, tta: false}
"""


def _train(recipe, data, storage) -> tuple:
    log = io.StringIO()
    result = train_recipe(str(recipe), data, str(storage), "tiny", log=log)
    return result, log.getvalue()


def test_an_edited_recipe_trains_anew_and_an_unchanged_one_is_reused(demo_dataset, tmp_path):
    recipe, storage = tmp_path / "tiny.yaml", tmp_path / "runs"
    recipe.write_text(TINY.replace("LR", "0.1"))
    first, log = _train(recipe, demo_dataset, storage)
    assert first.run_dir == str(storage / "tiny") and ": training" in log
    files = tree_sha256(first.run_dir)

    again, log = _train(recipe, demo_dataset, storage)
    assert again == first and "reusing the finished run" in log

    recipe.write_text(TINY.replace("LR", "0.05"))            # edited: a new run
    edited, log = _train(recipe, demo_dataset, storage)
    assert edited.run_dir != first.run_dir
    assert os.path.basename(edited.run_dir).startswith("tiny-")
    assert "differing: optim.lr" in log and ": training" in log
    assert tree_sha256(first.run_dir) == files                    # the old run is left as it was

    again, log = _train(recipe, demo_dataset, storage)       # the edited recipe's run reused
    assert again == edited and "reusing the finished run" in log
    recipe.write_text(TINY.replace("LR", "0.1"))             # back to the first content
    again, log = _train(recipe, demo_dataset, storage)
    assert again == first and "reusing the finished run" in log


def test_differences_name_the_changed_keys():
    a = {"config": {"optim": {"lr": 0.1, "momentum": 0.9}, "training": {"epochs": 1}},
         "dataset": "/d"}
    b = {"config": {"optim": {"lr": 0.2, "momentum": 0.9}, "training": {"epochs": 2}},
         "dataset": "/e"}
    assert differences(a, b) == ["dataset", "optim.lr", "training.epochs"]
    assert differences({"config": None, "dataset": "/d"}, a) != []
