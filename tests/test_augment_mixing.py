"""Replayable MixUp/CutMix with apple/ml-dr's semantics: the partner's own augmented view,
lam = Beta(alpha, alpha) / div_by, CutMix box and area-corrected lam, exact replay."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from shardforge.augment import (
    AugPolicy,
    apply_batch,
    apply_params,
    image_rng,
    param_dtype,
    param_fields,
    partner_view,
    sample_params,
)

PLAIN = AugPolicy()
MIX = AugPolicy(mixup_p=1.0, cutmix_p=1.0)
ML_DR = AugPolicy(mixup_p=0.5, cutmix_p=0.5)        # randaug_mixing.yaml
SIZES = np.array([(200, 150), (90, 120), (500, 375), (3, 500), (500, 3), (1, 1)])
VIEW = ("rrc_i", "rrc_j", "rrc_h", "rrc_w", "flip", "ra_op0", "ra_mag0", "ra_op1", "ra_mag1",
        "erase_i", "erase_j", "erase_h", "erase_w")


def _image(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([yy * 150 / height, xx * 150 / width, (yy + xx) * 75 / (height + width)], -1)
    return (40 + base + rng.integers(0, 20, (height, width, 3))).astype(np.uint8)


IMAGES = [_image(h, w, n) for n, (w, h) in enumerate(SIZES)]


def _hand_row(policy: AugPolicy, size: int, **fields) -> np.void:
    """A record whose own and partner views are the whole ``size x size`` image, no flip,
    RandAugment Identity, no erasing; ``fields`` set the rest."""
    row = np.zeros(1, dtype=param_dtype(policy))[0]
    for prefix in ("", "p_"):
        row[prefix + "rrc_h"] = row[prefix + "rrc_w"] = size
    row["mixup_lam"] = row["cutmix_lam"] = 1.0
    for name, value in fields.items():
        row[name] = value
    return row


def test_policy_defaults_are_ml_dr_and_mixing_is_off():
    assert not PLAIN.mixing and PLAIN.mixup_p == PLAIN.cutmix_p == 0.0
    assert (ML_DR.mixup_alpha, ML_DR.mixup_div_by, ML_DR.mixup_p) == (1.0, 2.0, 0.5)
    assert (ML_DR.cutmix_alpha, ML_DR.cutmix_p) == (1.0, 0.5)
    assert AugPolicy.from_dict(ML_DR.to_dict()) == ML_DR
    old = {k: v for k, v in PLAIN.to_dict().items() if k != "mixup_div_by"}
    old["mixup_alpha"] = 0.2                # a summary written before mixup_div_by existed
    assert AugPolicy.from_dict(old).mixup_div_by == 2.0
    with pytest.raises(ValueError, match="mixup_div_by"):
        AugPolicy(mixup_div_by=0.5)


def test_mixing_layout_mirrors_the_view_and_keeps_the_plain_layout():
    names = [f.name for f in param_fields(MIX)]
    plain = [f.name for f in param_fields(PLAIN)]
    assert names[:len(plain)] == plain                       # non-mixing prefix unchanged
    assert names[len(plain)] == "partner"
    assert names[len(plain) + 1:len(plain) + 1 + len(VIEW)] == ["p_" + n for n in VIEW]
    assert names[-6:] == ["mixup_lam", "cutmix_lam", "cutmix_x1", "cutmix_y1", "cutmix_x2",
                          "cutmix_y2"]
    for name in VIEW:
        assert param_dtype(MIX)["p_" + name] == param_dtype(MIX)[name]


def test_mixing_draws_come_after_the_image_view():
    """The image's own view fields of a mixing record are the non-mixing policy's record
    from the same generator state: mixing only appends draws."""
    mixed = sample_params(ML_DR, 200, 150, image_rng(3, "k"), 64, partner_sizes=SIZES)
    plain = sample_params(PLAIN, 200, 150, image_rng(3, "k"), 64)
    for name in plain.dtype.names:
        assert np.array_equal(mixed[name], plain[name]), name


def test_mixup_lambda_is_beta_over_div_by():
    """div_by 2: lam = Beta(1, 1) / 2 is uniform on [0, 0.5]; the same draws with div_by 1
    give exactly twice the value (halving is exact in binary floating point)."""
    only_mixup = AugPolicy(mixup_p=1.0)
    two = sample_params(only_mixup, 200, 150, image_rng(0, "lam"), 4000, partner_sizes=SIZES)
    one = sample_params(dataclasses.replace(only_mixup, mixup_div_by=1.0), 200, 150,
                        image_rng(0, "lam"), 4000, partner_sizes=SIZES)
    lam = two["mixup_lam"]
    assert (two["partner"] >= 0).all() and ((lam >= 0) & (lam <= 0.5)).all()
    assert np.array_equal(lam * 2, one["mixup_lam"])
    assert abs(lam.mean() - 0.25) < 0.01 and abs((lam < 0.25).mean() - 0.5) < 0.03
    assert (two["cutmix_lam"] == 1).all() and (two["cutmix_x2"] == 0).all()


def test_mixup_and_cutmix_fire_with_their_own_probability():
    rows = sample_params(ML_DR, 200, 150, image_rng(0, "p"), 4000, partner_sizes=SIZES)
    mixup, cutmix = rows["mixup_lam"] != 1, rows["cutmix_x2"] > rows["cutmix_x1"]
    assert abs(mixup.mean() - 0.5) < 0.03 and abs(cutmix.mean() - 0.49) < 0.03
    assert abs((mixup & cutmix).mean() - 0.245) < 0.03       # independent, both can fire
    assert np.array_equal(rows["partner"] >= 0, mixup | cutmix)
    assert ((rows["partner"] < len(SIZES)) & (rows["partner"] >= -1)).all()


def test_cutmix_box_and_area_lambda():
    """ml-dr rand_bbox: side int(size * sqrt(1 - lam)) around a uniform centre, clipped to
    the view; the stored lam is 1 - box area / view area (float32)."""
    policy = AugPolicy(size=64, cutmix_p=1.0)
    rows = sample_params(policy, 200, 150, image_rng(0, "cut"), 3000, partner_sizes=SIZES)
    x1, y1, x2, y2 = (rows[n].astype(np.int64) for n in ("cutmix_x1", "cutmix_y1",
                                                         "cutmix_x2", "cutmix_y2"))
    used = x2 > x1
    assert used.mean() > 0.95 and np.array_equal(used, y2 > y1)
    assert ((0 <= x1) & (x1 < x2) & (x2 <= 64) & (0 <= y1) & (y1 < y2) & (y2 <= 64))[used].all()
    area = (x2 - x1) * (y2 - y1) / 64**2
    assert np.array_equal(rows["cutmix_lam"][used], (1 - area[used]).astype(np.float32))
    assert (rows["cutmix_lam"][~used] == 1).all()
    inside = used & (x1 > 0) & (y1 > 0) & (x2 < 64) & (y2 < 64)   # unclipped: square, even
    assert np.array_equal((x2 - x1)[inside], (y2 - y1)[inside])
    assert ((x2 - x1)[inside] % 2 == 0).all()
    # side s = sqrt(U), U = 1 - Beta(1, 1); clipping a uniform centre keeps s - s^2 / 4 per
    # side: E[(s - s^2 / 4)^2] = 1/2 - 1/5 + 1/48 = 0.321 (less int truncation)
    assert abs(area[used].mean() - 0.321) < 0.02


def test_partner_box_is_inside_the_partner_image():
    rows = sample_params(ML_DR, 640, 480, image_rng(1, "box"), 3000, partner_sizes=SIZES)
    mixes = rows["partner"] >= 0
    w, h = SIZES[rows["partner"][mixes], 0], SIZES[rows["partner"][mixes], 1]
    i, j = rows["p_rrc_i"][mixes].astype(int), rows["p_rrc_j"][mixes].astype(int)
    bh, bw = rows["p_rrc_h"][mixes].astype(int), rows["p_rrc_w"][mixes].astype(int)
    assert ((i >= 0) & (j >= 0) & (bh > 0) & (bw > 0) & (i + bh <= h) & (j + bw <= w)).all()
    assert set(rows["partner"][mixes].tolist()) == set(range(len(SIZES)))
    tiny = rows[mixes][rows["partner"][mixes] == 5]              # the 1x1 partner
    assert (tiny["p_rrc_h"] == 1).all() and (tiny["p_rrc_w"] == 1).all()
    for name in rows.dtype.names:                                  # no partner: zeros
        if name.startswith("p_"):
            assert (rows[name][~mixes] == 0).all(), name


def test_partner_view_is_the_partners_own_augmented_view():
    """The p_ fields replay on the partner's source image exactly as a plain record of the
    same fields (RRC in the partner's pixels, flip, RandAugment, RandomErasing)."""
    policy = AugPolicy(size=48, mixup_p=1.0, erasing_p=1.0)
    rows = sample_params(policy, 200, 150, image_rng(2, "pv"), 40, partner_sizes=SIZES[:3])
    plain_policy = dataclasses.replace(policy, mixup_p=0.0)
    for row in rows:
        partner = IMAGES[int(row["partner"])]
        plain = np.zeros(1, dtype=param_dtype(plain_policy))[0]
        for name in VIEW:
            plain[name] = row["p_" + name]
        plain["erase_fill"] = row["erase_fill"]
        want = apply_params(partner, plain, plain_policy)
        assert torch.equal(partner_view(partner, row, policy), want)
    assert (rows["p_erase_h"] > 0).mean() > 0.5


def test_mixup_pixels_by_hand_rounded_to_uint8():
    """lam * x + (1 - lam) * x2 on the uint8 views, rounded half to even (our deviation:
    ml-dr mixes normalised floats; rounding keeps replay exact bytes)."""
    img = np.full((16, 16, 3), 200, np.uint8)
    other = np.full((16, 16, 3), 40, np.uint8)
    policy = AugPolicy(size=16, mixup_p=1.0)
    row = _hand_row(policy, 16, partner=0, mixup_lam=0.25)
    assert (apply_params(img, row, policy, partner=other) == 80).all()   # 50 + 30
    row["mixup_lam"] = 0.5
    odd = np.full((16, 16, 3), 101, np.uint8)
    zero = np.zeros((16, 16, 3), np.uint8)
    assert (apply_params(odd, row, policy, partner=zero) == 50).all()   # 50.5 -> 50


def test_cutmix_pixels_by_hand_after_mixup():
    """The box (x = column, y = row, exclusive ends) takes the partner view's pixels, on top
    of the MixUp result; everything else keeps the mixed pixels."""
    img = np.full((16, 16, 3), 200, np.uint8)
    other = np.full((16, 16, 3), 40, np.uint8)
    policy = AugPolicy(size=16, mixup_p=1.0, cutmix_p=1.0)
    row = _hand_row(policy, 16, partner=0, mixup_lam=0.25, cutmix_x1=2, cutmix_y1=5,
                    cutmix_x2=10, cutmix_y2=7, cutmix_lam=1 - 16 / 256)
    out = apply_params(img, row, policy, partner=other)
    box = torch.zeros(16, 16, dtype=torch.bool)
    box[5:7, 2:10] = True
    assert (out[:, box] == 40).all() and (out[:, ~box] == 80).all()


def test_mixed_replay_is_exact_and_matches_its_parts():
    policy = dataclasses.replace(ML_DR, size=64)
    rows = sample_params(policy, 200, 150, image_rng(4, "rep"), 24, partner_sizes=SIZES)
    partners = [IMAGES[int(p)] if p >= 0 else None for p in rows["partner"]]
    batch = apply_batch([IMAGES[0]] * len(rows), rows, policy, partners=partners)
    for n, row in enumerate(rows):
        out = apply_params(IMAGES[0], row, policy, partner=partners[n])
        assert torch.equal(out, batch[n]) and out.dtype == torch.uint8
        if row["partner"] < 0:
            continue
        x1, y1, x2, y2 = (int(row[k]) for k in ("cutmix_x1", "cutmix_y1", "cutmix_x2",
                                                "cutmix_y2"))
        view = partner_view(partners[n], row, policy)
        assert torch.equal(out[:, y1:y2, x1:x2], view[:, y1:y2, x1:x2])


def test_mixing_errors_name_the_input_and_the_fix():
    with pytest.raises(ValueError, match="no partner_sizes were given"):
        sample_params(ML_DR, 200, 150, image_rng(0, "e"), 5)
    with pytest.raises(ValueError, match=r"not an integer \(P, 2\) array"):
        sample_params(ML_DR, 200, 150, image_rng(0, "e"), 5, partner_sizes=np.zeros((0, 2), int))
    with pytest.raises(ValueError, match="outside"):
        sample_params(ML_DR, 200, 150, image_rng(0, "e"), 5,
                      partner_sizes=np.array([(10, 10), (0, 4)]))
    sample_params(PLAIN, 200, 150, image_rng(0, "e"), 5)     # no pool needed without mixing
    rows = sample_params(MIX, 200, 150, image_rng(0, "e"), 5, partner_sizes=SIZES[:3])
    with pytest.raises(ValueError, match="no partner image was given"):
        apply_params(IMAGES[0], rows[0], MIX)
    too_small = np.zeros((2, 2, 3), np.uint8)
    with pytest.raises(ValueError, match="partner's crop box"):
        big = rows[np.argmax(rows["p_rrc_h"])]
        apply_params(IMAGES[0], big, MIX, partner=too_small)
    with pytest.raises(ValueError, match="does not mix"):
        partner_view(IMAGES[0], sample_params(PLAIN, 200, 150, image_rng(0, "e"), 1)[0], PLAIN)


def test_reinforce_params_give_ml_dr_randaug_mixing():
    """The pipeline's parameters (card keys and CLI flags from one declaration): mixup_p 0.5
    and cutmix_p 0.5 with the other defaults are ml-dr's randaug_mixing policy."""
    from shardforge.cli.params import params_from_args
    from shardforge.cli.reinforce import build_parser
    from shardforge.variants.reinforce.spec import PARAMS, reinforce_config

    for name in ("mixup_p", "mixup_alpha", "mixup_div_by", "cutmix_p", "cutmix_alpha"):
        assert PARAMS[name].help, name
    args = build_parser().parse_args(["--teacher", "t", "--mixup-p", "0.5", "--cutmix-p", "0.5"])
    params = params_from_args(args, PARAMS)
    policy = reinforce_config(params, "parent", "n", "out", ("teacher",)).policy
    assert policy == dataclasses.replace(ML_DR, size=224)
    args = build_parser().parse_args(["--teacher", "t", "--mixup-p", "0.5",
                                      "--mixup-div-by", "1", "--mixup-alpha", "0.2"])
    policy = reinforce_config(params_from_args(args, PARAMS), "p", "n", "o", ("t",)).policy
    assert (policy.mixup_div_by, policy.mixup_alpha, policy.cutmix_p) == (1.0, 0.2, 0.0)


def test_mixing_on_natural_photos_of_different_sizes_replays_exactly():
    """Natural photos (scikit-image samples) as image and partners: every partner box fits
    its own photo, and replay is exact and stable."""
    from test_reliability_samples import photo

    photos = [photo(375, 500, "astronaut"), photo(300, 451, "chelsea"),
              photo(400, 300, "coffee"), photo(33, 900, "astronaut")]
    sizes = np.array([(p.shape[1], p.shape[0]) for p in photos])
    rows = sample_params(ML_DR, 500, 375, image_rng(7, "photo"), 200, partner_sizes=sizes)
    mixed = rows[rows["partner"] >= 0]
    assert len(mixed) > 100
    for row in mixed[:40]:
        w, h = sizes[row["partner"]]
        assert row["p_rrc_j"] + row["p_rrc_w"] <= w and row["p_rrc_i"] + row["p_rrc_h"] <= h
        view = apply_params(photos[0], row, ML_DR, partner=photos[row["partner"]])
        assert view.shape == (3, 224, 224)
        assert torch.equal(view, apply_params(photos[0], row, ML_DR,
                                              partner=photos[row["partner"]]))
