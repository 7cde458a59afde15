"""Stylized-ImageNet: AdaIN layer and network layout, Fourier swap, styles, assignment,
the variant end to end (read back by webdataset and FFCV), shape bias."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from shardforge.formats.image import resize_center_crop
from shardforge.variants.stylize import adain as A
from shardforge.variants.stylize.fourier import fourier_stylize, swap_amplitude
from shardforge.variants.stylize.shape_bias import (
    IMAGENET_16,
    category_mapping,
    category_probabilities,
    list_stimuli,
    parse_stimulus_name,
    shape_bias,
)
from shardforge.variants.stylize.spec import make_stylize_variant
from shardforge.variants.stylize.styles import (
    BUILTIN_DEMO,
    StyleSetError,
    load_style_set,
    preprocess_style,
    read_style,
)
from shardforge.variants.stylize.transform import StylizeConfig, assign_style

ENCODER_CONVS = {0, 2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51}  # anchors
DECODER_CONVS = {1, 5, 8, 11, 14, 18, 21, 25, 28}


def _keys(indices: set[int]) -> set[str]:
    return {f"{i}.{p}" for i in indices for p in ("weight", "bias")}


# ---------------------------------------------------------------------------- AdaIN layer

def test_adain_output_has_the_style_channel_means_and_stds():
    gen = torch.Generator().manual_seed(0)
    content = torch.randn(3, 16, 9, 7, generator=gen) * 4 + 2
    style = torch.randn(3, 16, 11, 5, generator=gen) * torch.rand(1, 16, 1, 1, generator=gen) * 9
    style = style + torch.randn(1, 16, 1, 1, generator=gen) * 5
    out = A.adain(content, style, alpha=1.0)
    s = style.reshape(3, 16, -1)
    o = out.reshape(3, 16, -1)
    assert torch.allclose(o.mean(2), s.mean(2), atol=1e-4)
    # std from the unbiased variance (+ 1e-5 on both sides: the ratio is exact up to eps)
    want = (s.var(2, unbiased=True) + 1e-5).sqrt()
    got = o.var(2, unbiased=True).sqrt()
    c_var = content.reshape(3, 16, -1).var(2, unbiased=True)
    assert torch.allclose(got, want * (c_var / (c_var + 1e-5)).sqrt(), rtol=1e-4)
    assert torch.allclose(A.adain(content, style, alpha=0.0), content)
    half = A.adain(content, style, alpha=0.5)
    assert torch.allclose(half, 0.5 * out + 0.5 * content, atol=1e-5)


def test_channel_stats_use_unbiased_variance_plus_eps():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    mean, std = A.channel_stats(x)
    assert mean.item() == pytest.approx(3.0)
    assert std.item() == pytest.approx(((4 + 1 + 0 + 9) / 3 + 1e-5) ** 0.5)


# ---------------------------------------------------------------------------- the network

@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("adain"))
    A.save_random_weights(d, seed=0)
    return d


def test_random_net_with_canonical_keys_loads_and_runs(random_weights):
    enc = torch.load(os.path.join(random_weights, A.ENCODER_FILE), weights_only=True)
    dec = torch.load(os.path.join(random_weights, A.DECODER_FILE), weights_only=True)
    assert set(enc) == _keys(ENCODER_CONVS) and set(dec) == _keys(DECODER_CONVS)
    assert tuple(enc["0.weight"].shape) == (3, 3, 1, 1)
    assert tuple(enc["29.weight"].shape) == (512, 256, 3, 3)
    assert tuple(dec["1.weight"].shape) == (256, 512, 3, 3)
    assert tuple(dec["28.weight"].shape) == (3, 64, 3, 3)
    net = A.load_adain(random_weights)
    assert len(net.encoder) == A.RELU4_1 and isinstance(net.encoder[-1], torch.nn.ReLU)
    assert net.sha256 == A.weights_sha256(random_weights)
    rng = np.random.default_rng(0)
    content = rng.integers(0, 256, (2, 60, 52, 3), dtype=np.uint8)   # not multiples of 8
    styles = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    feat = net.encode(A.to_tensor(content, torch.device("cpu")))
    assert tuple(feat.shape) == (2, 512, 8, 7)                       # ceil-mode pools
    mean, std = A.style_stats_batch(net, styles)
    out = A.stylize_batch(net, content, mean, std, alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == content.shape
    again = A.stylize_batch(net, content, mean, std, alpha=1.0)
    assert np.array_equal(out, again)
    # batched == one at a time (the reference loops image by image)
    one = A.stylize_batch(net, content[1:], mean[1:], std[1:], alpha=1.0)
    assert np.abs(one.astype(int) - out[1:].astype(int)).max() <= 1


def test_amp_dtype_autocasts_on_cuda_only_and_checks_the_name():
    assert A.amp_dtype(torch.device("cpu"), "fp16") is None
    assert A.amp_dtype(torch.device("cuda"), "bf16") is torch.bfloat16
    assert A.amp_dtype(torch.device("cuda"), "off") is None
    with pytest.raises(ValueError, match="amp must be one of fp16, bf16, off"):
        A.amp_dtype(torch.device("cpu"), "fp32")


def test_missing_or_mismatched_key_is_named(random_weights, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(random_weights, bad)
    enc = torch.load(bad / A.ENCODER_FILE, weights_only=True)
    del enc["29.weight"]
    torch.save(enc, bad / A.ENCODER_FILE)
    with pytest.raises(A.WeightsError, match=r"vgg_normalised\.pth lacks key '29\.weight'"):
        A.load_adain(str(bad))
    shutil.copy(os.path.join(random_weights, A.ENCODER_FILE), bad / A.ENCODER_FILE)
    dec = torch.load(bad / A.DECODER_FILE, weights_only=True)
    dec["28.weight"] = torch.zeros(3, 32, 3, 3)
    torch.save(dec, bad / A.DECODER_FILE)
    with pytest.raises(A.WeightsError, match=r"decoder\.pth key '28\.weight' has shape "
                                             r"\(3, 32, 3, 3\), expected \(3, 64, 3, 3\)"):
        A.load_adain(str(bad))
    dec["99.bias"] = torch.zeros(1)
    dec["28.weight"] = torch.zeros(3, 64, 3, 3)
    torch.save(dec, bad / A.DECODER_FILE)
    with pytest.raises(A.WeightsError, match=r"unexpected key '99\.bias'"):
        A.load_adain(str(bad))
    os.remove(bad / A.DECODER_FILE)
    with pytest.raises(A.WeightsError, match=r"decoder\.pth not found.*--method fourier"):
        A.load_adain(str(bad))


def test_variant_params_record_weights_and_style_set(random_weights, tmp_path):
    (tmp_path / "s.png").write_bytes(_png(230, 240))
    styles = load_style_set(str(tmp_path))
    config = StylizeConfig(method="adain", weights=random_weights)
    spec = make_stylize_variant(config, styles, num_gpus=1.0)
    p = spec.params
    assert p["weights_sha256"] == A.weights_sha256(random_weights)
    assert p["styles_sha256"] == styles.sha256 and p["num_styles"] == 1
    assert (p["resize"], p["crop"], p["alpha"], p["amp"]) == (256, 224, 1.0, "fp16")
    assert spec.use_actors and spec.num_gpus == 1.0 and spec.image.write_mode == "raw"
    assert "weights" not in p                  # a machine-local path is not an identity
    jpeg = make_stylize_variant(StylizeConfig(method="fourier"), styles, jpeg_quality=90)
    assert jpeg.image.write_mode == "jpg" and jpeg.image.jpeg_quality == 90
    assert not jpeg.use_actors and "weights_sha256" not in jpeg.params


# ---------------------------------------------------------------------------- Fourier

def test_fourier_keeps_content_phase_and_takes_style_amplitude():
    rng = np.random.default_rng(1)
    content = rng.integers(0, 256, (32, 40, 3)).astype(np.uint8)
    style = rng.integers(0, 256, (32, 40, 3)).astype(np.uint8)
    out = swap_amplitude(content, style, alpha=1.0)
    fo, fc, fs = (np.fft.fft2(x.astype(np.float64), axes=(0, 1)) for x in (out, content, style))
    assert np.allclose(np.abs(fo), np.abs(fs), atol=1e-6)
    nz = np.abs(fc) > 1e-6
    assert np.allclose(np.exp(1j * np.angle(fo[nz])), np.exp(1j * np.angle(fc[nz])), atol=1e-6)
    assert np.allclose(swap_amplitude(content, style, alpha=0.0), content, atol=1e-6)
    u8 = fourier_stylize(content, style)
    assert u8.dtype == np.uint8 and np.array_equal(u8, np.clip(np.rint(out), 0, 255))
    with pytest.raises(ValueError, match="same shape"):
        swap_amplitude(content, style[:16])


# ---------------------------------------------------------------------------- styles

def _png(w: int, h: int, seed: int = 0) -> bytes:
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_style_preprocessing_drops_small_and_corrupt_with_reasons(tmp_path):
    import cv2

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "big.png").write_bytes(_png(300, 260))
    (tmp_path / "small.png").write_bytes(_png(400, 200, 1))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (tmp_path / "exact.png").write_bytes(_png(224, 224, 2))
    (tmp_path / "notes.txt").write_text("ignored")
    ss = load_style_set(str(tmp_path))
    assert [s.key for s in ss.styles] == ["a/big.png", "exact.png"]
    reasons = {r["style"]: r["reason"] for r in ss.rejects}
    assert set(reasons) == {"small.png", "broken.jpg"}
    assert "400x200 px is smaller than 224" in reasons["small.png"]
    big = np.asarray(Image.open(tmp_path / "a" / "big.png"))
    want = cv2.resize(big[:, 20:280], (224, 224), interpolation=cv2.INTER_AREA)
    assert np.array_equal(read_style(ss.styles[0]), want)
    assert read_style(ss.styles[1]).shape == (224, 224, 3)
    assert ss.sha256 == load_style_set(str(tmp_path)).sha256
    (tmp_path / "exact.png").write_bytes(_png(224, 224, 3))       # other bytes, other set
    assert ss.sha256 != load_style_set(str(tmp_path)).sha256
    (tmp_path / "empty").mkdir()
    with pytest.raises(StyleSetError, match="no image"):
        load_style_set(str(tmp_path / "empty"))
    with pytest.raises(Exception, match="smaller than 224"):
        preprocess_style(_png(100, 500))


def test_builtin_demo_styles_are_deterministic():
    a = load_style_set(BUILTIN_DEMO)
    assert len(a.styles) == 64 and not a.rejects
    assert np.array_equal(read_style(a.styles[5]), read_style(a.styles[5]))
    assert not np.array_equal(read_style(a.styles[5]), read_style(a.styles[6]))


# ---------------------------------------------------------------------------- content, RNG

def test_content_crop_matches_torchvision():
    from torchvision import transforms

    tv = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    for w, h in ((500, 375), (333, 500), (96, 64)):
        a = np.random.default_rng(w).integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert np.array_equal(resize_center_crop(a, 256, 224), np.asarray(tv(Image.fromarray(a))))


def test_style_assignment_is_seeded_per_key_and_uniform():
    keys = [f"img_{i:06d}" for i in range(8000)]
    ids = [assign_style(0, k, 8) for k in keys]
    assert ids == [assign_style(0, k, 8) for k in keys]              # deterministic
    assert ids != [assign_style(1, k, 8) for k in keys]              # seed matters
    counts = np.bincount(ids, minlength=8)
    assert counts.sum() == 8000 and counts.min() > 850 and counts.max() < 1150


# ---------------------------------------------------------------------------- shape bias

def test_stimulus_names_and_same_class_exclusion(tmp_path):
    assert parse_stimulus_name("cat3-elephant1.png") == ("cat", "elephant")
    assert parse_stimulus_name("cat3-elephant1.jpg") is None
    (tmp_path / "cat").mkdir()
    for name in ("cat1-dog2.png", "cat2-cat1.png", "readme.txt"):
        (tmp_path / "cat" / name).write_bytes(b"")
    items, excluded = list_stimuli(str(tmp_path))
    assert [(s.shape, s.texture) for s in items] == [("cat", "dog")] and excluded == 1


def test_shape_bias_on_synthetic_probabilities():
    assert len(IMAGENET_16) == 16
    assert sum(len(v) for v in IMAGENET_16.values()) == 207
    assert len(IMAGENET_16["dog"]) == 109 and IMAGENET_16["keyboard"] == (508, 878)
    mapping = category_mapping([], 1000, ["cat", "dog", "car"])
    probs = np.full((4, 1000), 1e-4)
    probs[0, 281] = 0.5                      # cat (1 of 6 indices): mean 0.0834
    probs[1, list(IMAGENET_16["dog"])] = 0.005   # dog: mean 0.005 > others' 1e-4
    probs[2, 817] = 0.3                      # car
    probs[3, 499] = 0.9                      # knife
    cats = category_probabilities(probs, mapping)
    names = list(mapping)
    decisions = [names[i] for i in cats.argmax(1)]
    assert decisions == ["cat", "dog", "car", "knife"]
    r = shape_bias(["cat", "cat", "dog", "car", "bear"], ["dog", "dog", "car", "car", "oven"],
                   ["cat", "dog", "car", "car", "knife"])
    # stimulus 4 (car/car) excluded; shape hits: 1 (cat), texture hits: 2 (dog, car), other 1
    assert (r["shape_hits"], r["texture_hits"], r["other"]) == (1, 2, 1)
    assert r["excluded_same_class"] == 1 and r["stimuli"] == 4
    assert r["shape_bias"] == pytest.approx(1 / 3)
    assert r["per_shape"] == {"bear": None, "cat": 0.5, "dog": 0.0}
    demo = category_mapping(["circle", "square"], 2, ["square"])
    assert demo == {"circle": (0,), "square": (1,)}
    with pytest.raises(ValueError, match="do not cover"):
        category_mapping(["circle", "square"], 2, ["star"])


def _checkpoint(tmp_path, classes) -> str:
    from shardforge.models.archs import build_model
    from shardforge.models.checkpoint import STATE_FORMAT

    torch.manual_seed(0)
    model = build_model("small_cnn", len(classes), width=8)
    state = {"format": STATE_FORMAT, "model": model.state_dict(), "classes": classes,
             "model_spec": {"arch": "small_cnn", "num_classes": len(classes), "width": 8},
             "config": {"validation": {"res": 32, "crop_ratio": 0.875}}, "epochs_done": 0}
    path = str(tmp_path / "state.pt")
    torch.save(state, path)
    return path


def test_shape_bias_cli_on_demo_cue_conflict(tmp_path, capsys):
    from shardforge.cli import main
    from shardforge.sources.demo import DemoSpec
    from shardforge.variants.stylize.cue_conflict import generate_cue_conflict

    spec = DemoSpec(num_classes=3)
    summary = generate_cue_conflict(str(tmp_path / "stim"), spec, per_pair=2, side=64)
    assert summary["stimuli"] == 3 * 2 * 2
    names = sorted(os.listdir(tmp_path / "stim" / "circle"))
    assert names == ["circle0-square0.png", "circle0-triangle0.png", "circle1-square1.png",
                     "circle1-triangle1.png"]
    again = generate_cue_conflict(str(tmp_path / "stim"), spec, per_pair=1, side=64)
    assert again["stimuli"] == 6 and len(list_stimuli(str(tmp_path / "stim"))[0]) == 6
    generate_cue_conflict(str(tmp_path / "stim"), spec, per_pair=2, side=64)
    ckpt = _checkpoint(tmp_path, spec.classes)
    rc = main(["eval", "shape-bias", "--checkpoint", ckpt, "--stimuli",
               str(tmp_path / "stim"), "--json", "--device", "cpu"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["stimuli"] == 12 and r["mapping"] == "classes"
    assert r["shape_hits"] + r["texture_hits"] + r["other"] == 12
    assert main(["eval", "shape-bias", "--checkpoint", ckpt]) == 2
    assert main(["eval", "shape-bias", "--checkpoint", ckpt, "--stimuli",
                 str(tmp_path / "none")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_shape_bias_feeds_stimuli_unchanged_by_default(tmp_path, monkeypatch):
    """model-vs-human's protocol: the stimuli reach the model at their own size, unchanged
    (pixel for pixel, before normalisation); checkpoint-val crops and resizes as before;
    the result records which."""
    from PIL import Image

    from shardforge.models import checkpoint as ckpt_mod
    from shardforge.sources.demo import DemoSpec
    from shardforge.variants.stylize import shape_bias as sb
    from shardforge.variants.stylize.cue_conflict import generate_cue_conflict

    spec = DemoSpec(num_classes=3)
    stim = str(tmp_path / "stim")
    generate_cue_conflict(stim, spec, per_pair=1, side=72)
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.zeros(len(x), 3)

    monkeypatch.setattr(ckpt_mod, "model_from_state", lambda state: Recorder())
    path = _checkpoint(tmp_path, spec.classes)       # its validation: 32 px, ratio 0.875
    r = sb.evaluate_shape_bias(path, stim, device="cpu")
    assert (r["preprocess"], r["res"], r["crop_ratio"]) == ("stimuli", 72, None)
    items, _ = sb.list_stimuli(stim)
    first = np.array(Image.open(items[0].path).convert("RGB"))
    from shardforge.ops.normalize import normalize_images

    expected = normalize_images(torch.from_numpy(first).permute(2, 0, 1)[None])
    assert seen[0].shape[-2:] == (72, 72) and torch.equal(seen[0][:1], expected)
    seen.clear()
    r = sb.evaluate_shape_bias(path, stim, device="cpu", preprocess="checkpoint-val")
    assert (r["preprocess"], r["res"], r["crop_ratio"]) == ("checkpoint-val", 32, 0.875)
    assert seen[0].shape[-2:] == (32, 32)
    with pytest.raises(ValueError, match="apply to --preprocess checkpoint-val"):
        sb.evaluate_shape_bias(path, stim, res=64, device="cpu")
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(
        os.path.join(os.path.dirname(items[0].path), "circle9-square9.png"))
    with pytest.raises(ValueError, match="share one square size.*checkpoint-val"):
        sb.evaluate_shape_bias(path, stim, device="cpu")


# ---------------------------------------------------------------------------- end to end

def test_fourier_transform_on_a_shard():
    import cv2

    from shardforge.build.transform import Decoded
    from shardforge.variants.stylize.transform import StylizeTransform

    styles = load_style_set(BUILTIN_DEMO)
    rng = np.random.default_rng(0)
    shard = [Decoded(f"k{i}", i % 3, rng.integers(0, 256, (70 + i, 90, 3), dtype=np.uint8))
             for i in range(5)]
    config = StylizeConfig(method="fourier", resize=64, crop=48, seed=3)
    out = StylizeTransform(config, styles.styles)(shard, "train")
    assert [(d.key, d.label) for d in out] == [(d.key, d.label) for d in shard]
    for d, src in zip(out, shard, strict=True):
        sid = assign_style(3, d.key, 64)
        assert d.meta == {"style_id": sid, "style_key": f"demo-style-{sid:03d}"}
        style = read_style(styles.styles[sid])
        small = cv2.resize(style, (48, 48), interpolation=cv2.INTER_AREA)
        assert np.array_equal(d.pixels, fourier_stylize(resize_center_crop(src.pixels, 64, 48),
                                                        small))
    # one sample alone gets the same output (independent of the shard it is in)
    alone = StylizeTransform(config, styles.styles)(shard[2:3], "train")
    assert np.array_equal(alone[0].pixels, out[2].pixels)


@pytest.mark.slow
def test_fourier_variant_end_to_end(demo_dataset, ray_local, tmp_path):
    from helpers import ffcv_labels, file_bytes, index_rows, wds_samples

    from shardforge.catalog.variant import run_variant

    styles = load_style_set(BUILTIN_DEMO)
    config = StylizeConfig(method="fourier", resize=64, crop=56)
    spec = make_stylize_variant(config, styles)
    assert spec.params["styles_sha256"] == styles.sha256 and not spec.use_actors
    out = str(tmp_path / "sty")
    summary = run_variant(demo_dataset, spec, "demo-sty", out, register=False,
                          log=io.StringIO())
    train = wds_samples(out, "demo-sty", "train")
    assert len(train) == summary["splits"]["train"]["samples"] == 60
    for key, _, meta in train:
        assert meta["style_id"] == assign_style(0, key, 64)
        assert meta["style_key"] == styles.styles[meta["style_id"]].key
    rows = {r["key"]: r for r in index_rows(out)}
    assert all((rows[k]["width"], rows[k]["height"]) == (56, 56) for k, _, _ in train)
    assert all(rows[k]["format"] == "png" for k, _, _ in train)
    assert summary["splits"]["val"]["samples"] == 20
    beton = os.path.join(out, "beton", "demo-sty-train.beton")
    assert sorted(ffcv_labels(beton)) == sorted(label for _, label, _ in train)
    assert summary["variant"]["params"]["method"] == "fourier"
    before = file_bytes(out)          # rerun: shards verified and reused, same bytes
    run_variant(demo_dataset, spec, "demo-sty", out, register=False, log=io.StringIO())
    assert file_bytes(out) == before


@pytest.mark.slow
def test_adain_variant_on_actors_with_random_weights(demo_dataset, ray_local, random_weights,
                                                     tmp_path):
    from helpers import wds_samples

    from shardforge.catalog.variant import run_variant

    styles = load_style_set(BUILTIN_DEMO)
    config = StylizeConfig(method="adain", weights=random_weights, resize=40, crop=32,
                           batch_size=8)
    spec = make_stylize_variant(config, styles, num_actors=2)
    assert spec.use_actors and spec.params["weights_sha256"] == A.weights_sha256(random_weights)
    out = str(tmp_path / "adain")
    summary = run_variant(demo_dataset, spec, "demo-adain", out, register=False,
                          log=io.StringIO())
    train = wds_samples(out, "demo-adain", "train")
    assert len(train) == summary["splits"]["train"]["samples"] == 60
    assert all(m["style_id"] == assign_style(0, k, 64) for k, _, m in train)


def test_job_without_weights_fails_naming_the_fix(tmp_path, capsys):
    from shardforge.cli.stylize import main

    rc = main(["--source", "demo", "--styles", BUILTIN_DEMO, "--weights", str(tmp_path),
               "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "vgg_normalised.pth not found" in err and "--method fourier" in err
    assert main(["--source", "demo", "--styles", BUILTIN_DEMO]) == 2
    assert "method adain needs weights (--weights DIR" in capsys.readouterr().err
