"""Catalog reuse follows the content of the files a card names (observer, teacher, weights,
styles) and its secrets: a changed input builds anew (new directory, new shard bytes), an
unchanged one is reused, and the log says which input changed."""

from __future__ import annotations

import glob
import io
import os
import textwrap

import pytest
import torch

from shardforge.build.inputs import changes, checkpoint_input, file_input, tree_input
from shardforge.build.secrets import fingerprint
from shardforge.catalog.builder import build_dataset
from shardforge.catalog.store import Store
from shardforge.models.archs import build_model
from shardforge.models.checkpoint import STATE_FORMAT, save_state

TOY = """
    name: toy
    description: toy demo.
    source: {demo: {num_classes: 3, train_per_class: 4, val_per_class: 1, min_side: 64,
                    max_side: 120}}
    pipeline: {name: ingest, params: {max_res: 48, shard_size: 8}}
    licence: CC0-1.0
    """


def _card(cards, name: str, text: str) -> None:
    (cards / f"{name}.yaml").write_text(textwrap.dedent(text))


def _save_model(directory, classes, seed: int) -> str:
    """A randomly initialised small CNN as a jobs/train.py checkpoint in ``directory``."""
    torch.manual_seed(seed)
    spec = {"arch": "small_cnn", "num_classes": len(classes), "blurpool": False, "width": 4}
    model = build_model(**spec).eval()
    return save_state(str(directory), {"format": STATE_FORMAT, "epochs_done": 1,
                                       "model": model.state_dict(), "model_spec": spec,
                                       "classes": list(classes)})


def _bytes(out: str, pattern: str) -> dict[str, bytes]:
    found = {}
    for path in sorted(glob.glob(os.path.join(out, pattern))):
        with open(path, "rb") as f:
            found[os.path.basename(path)] = f.read()
    return found


def _build(env, name: str) -> tuple:
    log = io.StringIO()
    build = build_dataset(name, home=env["home"], cards_dir=env["cards"], log=log)
    return build, log.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory, ray_local):
    """A catalog home with ``toy`` (3 classes, 12 train / 3 val) built from its card."""
    base = tmp_path_factory.mktemp("inputs")
    cards = base / "cards"
    cards.mkdir()
    _card(cards, "toy", TOY)
    home = str(base / "home")
    toy = build_dataset("toy", home=home, cards_dir=str(cards), log=io.StringIO())
    return {"base": base, "cards": str(cards), "cards_path": cards, "home": home, "toy": toy}


# -- digests (no Ray) ----------------------------------------------------------------------


def test_digests_follow_content_and_say_what_changed(tmp_path):
    run = tmp_path / "run"
    _save_model(run / "checkpoint_epoch0001", ["a", "b"], seed=0)
    first = checkpoint_input(str(run))
    assert first.file.endswith("checkpoint_epoch0001/state.pt")
    assert checkpoint_input(str(run)) == first                      # deterministic
    _save_model(run / "checkpoint_epoch0002", ["a", "b"], seed=1)   # retrained: newest wins
    second = checkpoint_input(str(run))
    assert second.file.endswith("checkpoint_epoch0002/state.pt")
    assert second.digest != first.digest and second.digest.startswith("sha256:")
    (line,) = changes({"observer": first.to_dict()}, {"observer": second})
    assert line.startswith(f"observer {run} changed (sha256 {first.digest[7:19]}… -> "
                           f"sha256 {second.digest[7:19]}…)")
    assert changes({"observer": second.to_dict()}, {"observer": second}) == []
    assert changes(None, {"observer": second}) == [
        "the build recorded no digest of its input(s) observer"]
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint_input(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        file_input(str(tmp_path / "missing.pth"))


def test_directory_digest_reads_no_file_but_sees_every_change(tmp_path):
    styles = tmp_path / "styles"
    (styles / "sub").mkdir(parents=True)
    (styles / "a.png").write_bytes(b"one")
    (styles / "sub" / "b.jpg").write_bytes(b"two")
    (styles / "notes.txt").write_text("not an image")
    digest = tree_input(str(styles), (".png", ".jpg")).digest
    assert digest.startswith("stat-sha256:")
    (styles / "notes.txt").write_text("other")                    # not an image: ignored
    assert tree_input(str(styles), (".png", ".jpg")).digest == digest
    (styles / "a.png").write_bytes(b"ONE")                          # same size, new mtime
    os.utime(styles / "a.png", ns=(1, 1))
    changed = tree_input(str(styles), (".png", ".jpg")).digest
    assert changed != digest
    (styles / "sub" / "c.png").write_bytes(b"three")                # a new style image
    assert tree_input(str(styles), (".png", ".jpg")).digest != changed


def test_pipelines_declare_the_files_their_params_name(tmp_path):
    from shardforge.catalog.pipelines import get_pipeline
    from shardforge.variants.stylize.adain import save_random_weights

    run = tmp_path / "run"
    _save_model(run / "checkpoint_epoch0001", ["a", "b"], seed=0)
    distill = get_pipeline("distill").inputs
    assert set(distill({"method": "rded", "observer": str(run)})) == {"observer"}
    assert distill({"method": "random", "observer": None}) == {}
    weights = tmp_path / "w.pth"
    torch.save(build_model("small_cnn", 2, width=4).state_dict(), weights)
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\n")
    found = distill({"method": "rded", "observer": "small_cnn", "observer_weights": str(weights),
                     "observer_classes": str(classes)})
    assert set(found) == {"observer", "observer_classes"}

    reinforce = get_pipeline("reinforce").inputs
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("training: {epochs: 1}\n")
    found = reinforce({"teacher": f"{run}, recipe:{recipe}", "teacher_classes": "sorted"})
    assert set(found) == {"teacher1", "teacher2"}
    assert found["teacher2"].location == f"recipe:{recipe}"
    before = found["teacher2"].digest
    recipe.write_text("training: {epochs: 2}\n")     # a changed recipe: another teacher
    again = reinforce({"teacher": f"{run}, recipe:{recipe}", "teacher_classes": "sorted"})
    assert again["teacher2"].digest != before and again["teacher1"] == found["teacher1"]

    stylize = get_pipeline("stylize").inputs
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "a.png").write_bytes(b"x")
    assert stylize({"styles": "builtin:demo", "method": "fourier"}) == {}
    save_random_weights(str(tmp_path / "adain"), seed=0)
    found = stylize({"styles": str(styles), "method": "adain", "weights": str(tmp_path / "adain")})
    assert set(found) == {"styles", "weights"}
    save_random_weights(str(tmp_path / "adain"), seed=1)
    again = stylize({"styles": str(styles), "method": "adain", "weights": str(tmp_path / "adain")})
    assert again["weights"].digest != found["weights"].digest
    assert again["styles"] == found["styles"]


# -- builds ------------------------------------------------------------------------------


def test_distill_rebuilds_when_the_observer_is_retrained(env):
    run = env["base"] / "runs" / "observer"
    ckpt = run / "checkpoint_epoch0001"
    _save_model(ckpt, env["toy"].classes, seed=0)
    _card(env["cards_path"], "toy-rded", f"""
        name: toy-rded
        description: toy distilled.
        source: {{dataset: toy}}
        pipeline:
          name: distill
          params: {{method: rded, ipc: 1, observer: "{run}", size: 32, mipc: 4, num_crop: 5}}
        licence: CC0-1.0
        """)
    first, _ = _build(env, "toy-rded")
    assert first.ref == "toy-rded@v1"
    assert first.inputs["observer"]["digest"] == "sha256:" + first.params["observer_sha256"]
    again, log = _build(env, "toy-rded")
    assert again == first and "toy-rded: reusing toy-rded@v1" in log
    old_state = (ckpt / "state.pt").read_bytes()
    _save_model(ckpt, env["toy"].classes, seed=1)    # retrained: same path, new content
    second, log = _build(env, "toy-rded")
    new_sha = checkpoint_input(str(run)).digest
    assert second.ref == "toy-rded@v2" and second.out != first.out
    assert f"toy-rded: observer {run} changed (sha256 {first.params['observer_sha256'][:12]}…" \
           f" -> sha256 {new_sha[7:19]}…) since toy-rded@v1: rebuilding" in log
    assert second.params["observer_sha256"] == new_sha[7:]
    train = "wds/toy-rded-train-*.tar"
    assert _bytes(first.out, train).keys() == _bytes(second.out, train).keys()
    assert _bytes(first.out, train) != _bytes(second.out, train)   # other crops chosen
    assert _build(env, "toy-rded")[0] == second                      # unchanged: reused
    (ckpt / "state.pt").write_bytes(old_state)                       # the old observer back
    back, log = _build(env, "toy-rded")
    assert back == first and "reusing toy-rded@v1" in log
    assert Store(env["home"]).versions("toy-rded") == [1, 2]


@pytest.mark.slow      # ~35 s on 2 busy cores: two actor pools start
def test_reinforce_rebuilds_when_the_teacher_changes(env):
    teacher = env["base"] / "teacher"
    _save_model(teacher, env["toy"].classes, seed=0)
    _card(env["cards_path"], "toy-plus", f"""
        name: toy-plus
        description: toy reinforced.
        source: {{dataset: toy}}
        pipeline:
          name: reinforce
          params: {{teacher: "{teacher}", num_augmentations: 2, top_k: 2, size: 32,
                    batch_size: 16}}
        licence: CC0-1.0
        """)
    first, _ = _build(env, "toy-plus")
    assert _build(env, "toy-plus")[0] == first
    _save_model(teacher, env["toy"].classes, seed=1)
    second, log = _build(env, "toy-plus")
    assert second.ref == "toy-plus@v2" and second.out != first.out
    assert f"toy-plus: teacher {teacher} changed (sha256 " in log and "rebuilding" in log
    shards = "reinforce/*.parquet"
    assert _bytes(first.out, shards).keys() == _bytes(second.out, shards).keys()
    assert _bytes(first.out, shards) != _bytes(second.out, shards)
    assert _build(env, "toy-plus")[0] == second


def test_cuda_rebuilds_with_another_key_and_says_so(env, monkeypatch):
    _card(env["cards_path"], "toy-cuda", """
        name: toy-cuda
        description: toy made unlearnable.
        source: {dataset: toy}
        pipeline:
          name: unlearnable
          params: {method: cuda, p: 1.0}
          secrets: {private_key: {env: SF_TEST_INPUTS_KEY}}
        licence: CC0-1.0
        """)
    key, other = "inputs-test-key-0123456789", "inputs-test-key-9876543210"
    monkeypatch.setenv("SF_TEST_INPUTS_KEY", key)
    first, _ = _build(env, "toy-cuda")
    assert _build(env, "toy-cuda")[0] == first
    monkeypatch.setenv("SF_TEST_INPUTS_KEY", other)
    second, log = _build(env, "toy-cuda")
    assert second.ref == "toy-cuda@v2" and second.out != first.out
    assert (f"toy-cuda: secret private_key changed (fingerprint {fingerprint(key)} -> "
            f"{fingerprint(other)}) (compared with toy-cuda@v1): building anew") in log
    assert key not in log and other not in log
    train = "wds/toy-cuda-train-*.tar"
    assert _bytes(first.out, train) != _bytes(second.out, train)
    assert _bytes(first.out, "wds/toy-cuda-val-*.tar") == _bytes(second.out,
                                                                 "wds/toy-cuda-val-*.tar")
    assert _build(env, "toy-cuda")[0] == second
    monkeypatch.setenv("SF_TEST_INPUTS_KEY", key)      # the first key again: its build
    assert _build(env, "toy-cuda")[0] == first


def test_shards_in_one_directory_are_not_reused_across_observers(env, tmp_path):
    """The job without the catalog (pipelines/distill.py --out DIR): the observer's sha256
    is in every shard's spec hash, so a rerun into the same directory with a retrained
    observer redoes the shards; with the same observer the finished build is reused."""
    from shardforge.catalog.variant import run_variant
    from shardforge.variants.rded.spec import rded_variant

    run = tmp_path / "run"
    params = {"method": "rded", "ipc": 1, "observer": str(run), "size": 32, "mipc": 4,
              "num_crop": 5}
    out = str(tmp_path / "out")
    kw = dict(out=out, register=False, catalog_home=env["home"], log=io.StringIO())
    _save_model(run / "checkpoint_epoch0001", env["toy"].classes, seed=0)
    first = run_variant(env["toy"].ref, rded_variant(params), "toy-rded", **kw)
    before = _bytes(out, "wds/toy-rded-train-*.tar")
    _save_model(run / "checkpoint_epoch0001", env["toy"].classes, seed=1)
    second = run_variant(env["toy"].ref, rded_variant(params), "toy-rded", **kw)
    assert first["shards_reused"] == second["shards_reused"] == 0
    assert _bytes(out, "wds/toy-rded-train-*.tar") != before
    after = _bytes(out, "wds/toy-rded-train-*.tar")
    third = run_variant(env["toy"].ref, rded_variant(params), "toy-rded", **kw)
    assert third["job_hash"] == second["job_hash"] and third["created"] == second["created"]
    assert _bytes(out, "wds/toy-rded-train-*.tar") == after
