"""Replayable ImageNet+ augmentations: sampling, replay, record layout and storage."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torchvision.transforms.functional as F
import torchvision.transforms.v2.functional as F2
from torchvision.transforms import InterpolationMode, RandomResizedCrop

from shardforge.augment import (
    PARAM_FIELDS,
    RANDAUGMENT_OPS,
    AugPolicy,
    apply_batch,
    apply_params,
    apply_randaugment_op,
    image_rng,
    param_dtype,
    params_from_columns,
    params_nbytes,
    params_to_columns,
    partner_view,
    randaugment_magnitudes,
    sample_params,
)

POLICY = AugPolicy()
MIX = AugPolicy(mixup_p=1.0, cutmix_p=1.0)


def _image(height: int = 150, width: int = 200, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus noise, values kept inside [40, 210] (so AutoContrast acts)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([yy * 150 / height, xx * 150 / width, (yy + xx) * 75 / (height + width)], -1)
    return (40 + base + rng.integers(0, 20, (height, width, 3))).astype(np.uint8)


def _identity_row(width: int, height: int) -> np.void:
    row = np.zeros(1, dtype=param_dtype(POLICY))[0]
    row["rrc_h"], row["rrc_w"] = height, width
    return row


def test_layout_fields_and_bytes():
    names = [f.name for f in PARAM_FIELDS]
    assert names == ["rrc_i", "rrc_j", "rrc_h", "rrc_w", "flip", "ra_op0", "ra_mag0", "ra_op1",
                     "ra_mag1", "erase_i", "erase_j", "erase_h", "erase_w", "erase_fill"]
    assert params_nbytes(POLICY) == 28 == param_dtype(POLICY).itemsize
    assert params_nbytes(MIX) == 28 + 4 + 28 + 4 + 4 + 4 * 2    # + partner id and its view
    assert param_dtype(AugPolicy(randaugment_ops=3)).itemsize == 33


def test_policy_dict_round_trip():
    data = json.loads(json.dumps(MIX.to_dict()))
    assert data["rrc_scale"] == [0.08, 1.0] and data["randaugment_magnitude"] == 9
    assert AugPolicy.from_dict(data) == MIX
    with pytest.raises(ValueError, match="unknown fields"):
        AugPolicy.from_dict({"magnitude": 9})


def test_policy_rejects_bad_values():
    with pytest.raises(ValueError, match="erasing_p"):
        AugPolicy(erasing_p=1.5)
    with pytest.raises(ValueError, match="randaugment_magnitude"):
        AugPolicy(randaugment_magnitude=31)


def test_rrc_params_within_torchvision_bounds():
    width, height, num = 500, 375, 4000
    rows = sample_params(POLICY, width, height, image_rng(1, "k"), num)
    i, j, h, w = (rows[n].astype(np.int64) for n in ("rrc_i", "rrc_j", "rrc_h", "rrc_w"))
    assert (i >= 0).all() and (j >= 0).all() and (h > 0).all() and (w > 0).all()
    assert (i + h <= height).all() and (j + w <= width).all()
    # w, h are rounded, so the area/ratio bounds hold up to half a pixel per side.
    area = h * w / (width * height)
    slack = (h + w + 1) / (2 * width * height) + 1e-9
    assert (area >= 0.08 - slack).all() and (area <= 1.0 + slack).all()
    ratio = w / h
    assert (ratio >= 3 / 4 - 0.5 / h - 1e-9).all() and (ratio <= 4 / 3 + 0.5 / h + 1e-9).all()
    # Same distribution as torchvision's sampler (mean crop area fraction and mean ratio).
    torch.manual_seed(0)
    img = torch.zeros(3, height, width, dtype=torch.uint8)
    ref = np.array([RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
                    for _ in range(num)], dtype=np.float64)
    ref_area = ref[:, 2] * ref[:, 3] / (width * height)
    assert abs(area.mean() - ref_area.mean()) < 0.03
    assert abs(np.log(ratio).mean() - np.log(ref[:, 3] / ref[:, 2]).mean()) < 0.03


def test_rrc_fallback_is_central_crop():
    # A 1000x10 strip: no 10-attempt box fits, torchvision falls back to a central crop.
    rows = sample_params(POLICY, 1000, 10, image_rng(0, "strip"), 50)
    assert set(rows["rrc_h"].tolist()) <= set(range(1, 11))
    fallback = rows[rows["rrc_w"] == round(10 * 4 / 3)]
    assert len(fallback) > 0
    assert (fallback["rrc_h"] == 10).all() and (fallback["rrc_i"] == 0).all()
    assert (fallback["rrc_j"] == (1000 - 13) // 2).all()


def test_same_seed_same_params_different_seed_different():
    a = sample_params(POLICY, 320, 240, image_rng(7, "img_001"), 64)
    b = sample_params(POLICY, 320, 240, image_rng(7, "img_001"), 64)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != sample_params(POLICY, 320, 240, image_rng(8, "img_001"), 64).tobytes()
    assert a.tobytes() != sample_params(POLICY, 320, 240, image_rng(7, "img_002"), 64).tobytes()


def test_image_rng_independent_of_order():
    first = image_rng(3, "b").random(4)
    image_rng(3, "a").random(100)  # another image's draws change nothing for "b"
    assert np.array_equal(first, image_rng(3, "b").random(4))


def test_randaugment_fields_follow_torchvision_space():
    rows = sample_params(POLICY, 256, 256, image_rng(0, "ra"), 3000)
    table = randaugment_magnitudes(POLICY)
    signed = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
              "Contrast", "Sharpness"}
    for k in range(POLICY.randaugment_ops):
        ops, mags = rows[f"ra_op{k}"], rows[f"ra_mag{k}"]
        assert set(ops.tolist()) == set(range(14))
        for op in range(14):
            seen = set(mags[ops == op].tolist())
            value = float(table[op])
            if RANDAUGMENT_OPS[op] in signed:
                assert seen == {value, -value}
            else:
                assert seen == {value}
    # magnitude 9 of 31 bins, torchvision's float32 values
    assert table[RANDAUGMENT_OPS.index("Rotate")] == np.float32(9.0)
    assert table[RANDAUGMENT_OPS.index("Posterize")] == 7.0
    assert table[RANDAUGMENT_OPS.index("Solarize")] == np.float32(178.5)
    assert table[RANDAUGMENT_OPS.index("TranslateX")] == np.float32(150 / 331 * 224 * 9 / 30)


def test_replay_twice_identical_and_batch_matches():
    img = _image()
    rows = sample_params(POLICY, 200, 150, image_rng(0, "x"), 16)
    first = apply_batch([img] * 16, rows, POLICY)
    second = apply_batch([img] * 16, rows, POLICY)
    assert first.shape == (16, 3, 224, 224) and first.dtype == torch.uint8
    assert first.numpy().tobytes() == second.numpy().tobytes()
    chw = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    for n in range(16):
        assert torch.equal(apply_params(chw, rows[n], POLICY), first[n])


def test_identity_params_equal_torchvision_resize():
    img = _image()
    out = apply_params(img, _identity_row(200, 150), POLICY)
    ref = F2.resize(torch.from_numpy(img).permute(2, 0, 1), [224, 224], antialias=True)
    assert torch.equal(out, ref)
    flipped = _identity_row(200, 150)
    flipped["flip"] = 1
    assert torch.equal(apply_params(img, flipped, POLICY), ref.flip(-1))


def test_each_op_matches_torchvision_apply_op():
    autoaugment = pytest.importorskip("torchvision.transforms.autoaugment")
    ref_apply = getattr(autoaugment, "_apply_op", None)
    if ref_apply is None:
        pytest.skip("torchvision.transforms.autoaugment._apply_op is gone in this version")
    view = F2.resize(torch.from_numpy(_image()).permute(2, 0, 1), [224, 224], antialias=True)
    table = randaugment_magnitudes(POLICY)
    unsigned = {"Identity", "Posterize", "Solarize", "AutoContrast", "Equalize"}
    for op, name in enumerate(RANDAUGMENT_OPS):
        for sign in (1.0,) if name in unsigned else (1.0, -1.0):
            magnitude = float(sign * table[op])
            out = apply_randaugment_op(view, op, magnitude)
            ref = ref_apply(view, name, magnitude, interpolation=InterpolationMode.NEAREST,
                            fill=None)
            assert out.dtype == torch.uint8 and out.shape == view.shape
            assert torch.equal(out, ref), name
            if name == "Identity":
                assert torch.equal(out, view)
            else:
                assert not torch.equal(out, view), name


def test_translate_equals_torchvision_affine_for_any_shift():
    rng = np.random.default_rng(0)
    ops = (RANDAUGMENT_OPS.index("TranslateX"), RANDAUGMENT_OPS.index("TranslateY"))
    for height, width in ((32, 32), (17, 23)):
        img = torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))
        for shift in (-40, -23, -17, -9.7, -1, 0, 0.9, 1, 5.45, 16, 22, 23, 35):
            for op, translate in zip(ops, ([int(shift), 0], [0, int(shift)]), strict=True):
                ref = F.affine(img, angle=0.0, translate=translate, scale=1.0,
                               shear=[0.0, 0.0], interpolation=InterpolationMode.NEAREST)
                assert torch.equal(apply_randaugment_op(img, op, shift), ref), (op, shift)


def test_sharpness_equals_torchvision_for_any_image():
    rng = np.random.default_rng(1)
    op = RANDAUGMENT_OPS.index("Sharpness")
    images = [rng.integers(0, 256, (3, 29, 31), dtype=np.uint8),
              np.full((3, 8, 9), 255, dtype=np.uint8),
              (rng.integers(0, 2, (3, 40, 40)) * 255).astype(np.uint8),
              np.zeros((3, 2, 5), dtype=np.uint8)]
    for img in map(torch.from_numpy, images):
        for magnitude in (-1.0, -0.9, -0.27, -0.03, 0.0, 0.27, 0.5, 0.9, 2.0):
            ref = F.adjust_sharpness(img, 1.0 + magnitude)
            assert torch.equal(apply_randaugment_op(img, op, magnitude), ref), magnitude


def test_random_erasing_region_is_fill():
    policy = AugPolicy(erasing_p=1.0, randaugment_ops=0)
    img = _image()
    rows = sample_params(policy, 200, 150, image_rng(0, "erase"), 20)
    assert (rows["erase_h"] > 0).all()
    for row in rows:
        out = apply_params(img, row, policy)
        i, j, h, w = (int(row[n]) for n in ("erase_i", "erase_j", "erase_h", "erase_w"))
        assert 0 <= i and i + h <= 224 and 0 <= j and j + w <= 224
        assert h * w >= math.floor(0.02 * 224 * 224 * 0.9)
        assert (out[:, i:i + h, j:j + w] == 0).all()
        plain = row.copy()
        plain["erase_h"] = plain["erase_w"] = 0
        ref = apply_params(img, plain, policy).clone()
        ref[:, i:i + h, j:j + w] = 0
        assert torch.equal(out, ref)
    default = sample_params(POLICY, 200, 150, image_rng(0, "erase"), 2000)
    assert 0.2 < (default["erase_h"] > 0).mean() < 0.3


def test_mixing_records_and_replay():
    """ml-dr's pair semantics: the partner gets its own view (crop drawn for ITS size), MixUp
    weight Beta(1, 1) / 2 in [0, 0.5], CutMix pastes the partner's view in the box with an
    area-corrected lambda; replay is exact bytes."""
    img, other = _image(seed=0), _image(90, 120, seed=1)
    sizes = np.array([(200, 150), (120, 90), (64, 48)])        # (width, height) per partner
    rows = sample_params(MIX, 200, 150, image_rng(0, "mix"), 200, partner_sizes=sizes)
    assert ((rows["partner"] >= 0) & (rows["partner"] < 3)).all()
    assert ((rows["mixup_lam"] >= 0) & (rows["mixup_lam"] <= 0.5)).all()      # lambda halved
    assert rows["mixup_lam"].mean() == pytest.approx(0.25, abs=0.03)           # E[U(0,1)]/2
    for row in rows:                                 # the partner box fits the partner's size
        w, h = sizes[row["partner"]]
        assert 0 <= row["p_rrc_j"] and row["p_rrc_j"] + row["p_rrc_w"] <= w
        assert 0 <= row["p_rrc_i"] and row["p_rrc_i"] + row["p_rrc_h"] <= h
    row = next(r for r in rows if r["partner"] == 1 and r["cutmix_x2"] - r["cutmix_x1"] > 20)
    out = apply_params(img, row, MIX, partner=other)
    assert torch.equal(out, apply_params(img, row, MIX, partner=other))
    view = partner_view(other, row, MIX)
    x1, y1, x2, y2 = (int(row[n]) for n in ("cutmix_x1", "cutmix_y1", "cutmix_x2", "cutmix_y2"))
    assert torch.equal(out[:, y1:y2, x1:x2], view[:, y1:y2, x1:x2])
    assert row["cutmix_lam"] == np.float32(1 - (x2 - x1) * (y2 - y1) / 224**2)
    # outside the box: MixUp of the image's own view and the partner's view, by hand
    plain = row.copy()
    plain["partner"] = -1
    own = apply_params(img, plain, MIX).float()
    lam = float(row["mixup_lam"])
    mixed = (lam * own + (1 - lam) * view.float()).round()
    mask = torch.ones(224, 224, dtype=torch.bool)
    mask[y1:y2, x1:x2] = False
    assert torch.equal(out[:, mask].float(), mixed[:, mask])
    with pytest.raises(ValueError, match="partner"):
        apply_params(img, row, MIX)
    with pytest.raises(ValueError, match="partner_sizes"):
        sample_params(MIX, 200, 150, image_rng(0, "mix"), 5)


def test_mixing_defaults_are_ml_drs():
    policy = AugPolicy()
    assert (policy.mixup_alpha, policy.mixup_div_by, policy.cutmix_alpha) == (1.0, 2.0, 1.0)
    assert not policy.mixing                    # the recommended ImageNet+ setting
    half = AugPolicy(mixup_p=0.5, cutmix_p=0.5)
    rows = sample_params(half, 200, 150, image_rng(1, "p"), 4000,
                         partner_sizes=np.array([(200, 150)]))
    assert (rows["mixup_lam"] < 1).mean() == pytest.approx(0.5, abs=0.03)
    assert (rows["cutmix_lam"] < 1).mean() == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="mixup_div_by"):
        AugPolicy(mixup_div_by=0.5)


def test_record_from_another_policy_is_rejected():
    rows = sample_params(MIX, 200, 150, image_rng(0, "mix"), 1,
                         partner_sizes=np.array([(200, 150)]))
    with pytest.raises(ValueError, match="layout"):
        apply_params(_image(), rows[0], POLICY)
    row = _identity_row(300, 150)
    with pytest.raises(ValueError, match="outside"):
        apply_params(_image(), row, POLICY)


@pytest.mark.parametrize("policy", [POLICY, MIX], ids=["default", "mixing"])
def test_record_round_trip_parquet_columns(policy, tmp_path):
    rows = sample_params(policy, 640, 480, image_rng(5, "rt"), 300,
                         partner_sizes=np.array([(640, 480)] * 11))
    path = tmp_path / "cols.parquet"
    pq.write_table(pa.table(params_to_columns(rows)), path)
    table = pq.read_table(path)
    assert table.schema.field("aug_rrc_i").type == pa.int16()
    columns = {name: table[name].to_numpy() for name in table.column_names}
    assert params_from_columns(columns, policy).tobytes() == rows.tobytes()


def test_gzip_of_a_batch_is_compact():
    rows = np.concatenate([sample_params(POLICY, 500, 375, image_rng(0, f"img{n}"), 100)
                           for n in range(10)])
    packed = gzip.compress(rows.tobytes())
    assert len(rows.tobytes()) == 28 * 1000
    assert len(packed) < 28 * 1000
