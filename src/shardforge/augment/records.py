"""The fixed-width parameter record of one stored augmentation, and its columns.

Record layout (one numpy structured record per augmentation; ``n`` = ``randaugment_ops``;
the mixing fields exist only when ``mixup_p > 0`` or ``cutmix_p > 0``):

============== ======= ==============================================================
field          dtype   meaning
============== ======= ==============================================================
rrc_i          int16   crop top row in the source image (torchvision ``i``)
rrc_j          int16   crop left column in the source image (``j``)
rrc_h          int16   crop height in source pixels
rrc_w          int16   crop width in source pixels
flip           uint8   1 = horizontal flip after the crop
ra_op{k}       int8    RandAugment op k (0..13, order of :data:`RANDAUGMENT_OPS`), k < n
ra_mag{k}      float32 signed magnitude passed to the op (torchvision's float32 value)
erase_i        int16   erased box top row in the view (torchvision's ``x``/``i``)
erase_j        int16   erased box left column in the view (``y``/``j``)
erase_h        int16   erased box height; 0 = no erasing
erase_w        int16   erased box width; 0 = no erasing
erase_fill     uint8   fill value of the erased box (all channels)
partner        int32   partner index for MixUp/CutMix; -1 = no mixing
p_*            ...     the partner's own view: ``p_rrc_i`` .. ``p_erase_fill``, the fields
                       above drawn for the partner image (ml-dr augments both images)
mixup_lam      float32 MixUp weight of this image; 1.0 = no MixUp
cutmix_lam     float32 CutMix weight of this image (area-corrected); 1.0 = no CutMix
cutmix_x1      int16   CutMix box left column in the view
cutmix_y1      int16   CutMix box top row
cutmix_x2      int16   CutMix box right column (exclusive)
cutmix_y2      int16   CutMix box bottom row (exclusive)
============== ======= ==============================================================

Default policy: 28 bytes per record (:func:`params_nbytes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shardforge.augment.policy import AugPolicy

# ---------------------------------------------------------------------------------------
# Record layout


@dataclass(frozen=True)
class ParamField:
    """One record field: its name, storage dtype (numpy string) and meaning."""

    name: str
    dtype: str
    meaning: str


def param_fields(policy: AugPolicy) -> tuple[ParamField, ...]:
    """The record fields of ``policy``, in storage order (see the module docstring table)."""
    out = list(view_fields(policy))
    if policy.mixing:
        out += [ParamField("partner", "int32", "partner index in the shard (-1 = no mixing)")]
        out += [ParamField("p_" + f.name, f.dtype, "partner view: " + f.meaning)
                for f in view_fields(policy)]
        out += [
            ParamField("mixup_lam", "float32", "MixUp weight of this image (1 = none)"),
            ParamField("cutmix_lam", "float32", "CutMix weight of this image (1 = none)"),
            ParamField("cutmix_x1", "int16", "CutMix box left column"),
            ParamField("cutmix_y1", "int16", "CutMix box top row"),
            ParamField("cutmix_x2", "int16", "CutMix box right column (exclusive)"),
            ParamField("cutmix_y2", "int16", "CutMix box bottom row (exclusive)"),
        ]
    return tuple(out)


def view_fields(policy: AugPolicy) -> tuple[ParamField, ...]:
    """The fields of one image's view (crop, flip, RandAugment, erasing), in storage order."""
    out = [
        ParamField("rrc_i", "int16", "crop top row in the source image"),
        ParamField("rrc_j", "int16", "crop left column in the source image"),
        ParamField("rrc_h", "int16", "crop height in source pixels"),
        ParamField("rrc_w", "int16", "crop width in source pixels"),
        ParamField("flip", "uint8", "1 = horizontal flip"),
    ]
    for k in range(policy.randaugment_ops):
        out.append(ParamField(f"ra_op{k}", "int8", f"RandAugment op {k} (0..13)"))
        out.append(ParamField(f"ra_mag{k}", "float32", f"signed magnitude of op {k}"))
    out += [
        ParamField("erase_i", "int16", "erased box top row in the view"),
        ParamField("erase_j", "int16", "erased box left column in the view"),
        ParamField("erase_h", "int16", "erased box height (0 = no erasing)"),
        ParamField("erase_w", "int16", "erased box width (0 = no erasing)"),
        ParamField("erase_fill", "uint8", "erased box fill value"),
    ]
    return tuple(out)


#: The record fields of the default policy.
PARAM_FIELDS: tuple[ParamField, ...] = param_fields(AugPolicy())


def param_dtype(policy: AugPolicy) -> np.dtype:
    """The packed (unaligned) numpy structured dtype of ``policy``'s records."""
    return np.dtype([(f.name, f.dtype) for f in param_fields(policy)])


def params_nbytes(policy: AugPolicy) -> int:
    """Bytes of one packed record of ``policy`` (28 for the default policy)."""
    return param_dtype(policy).itemsize




def params_to_columns(params: np.ndarray, prefix: str = "aug_") -> dict[str, np.ndarray]:
    """Records as typed columns ``{prefix + field: array}`` (one parquet column per field,
    each in its storage dtype: the most compact on disk)."""
    return {prefix + n: np.ascontiguousarray(params[n]) for n in params.dtype.names or ()}


def params_from_columns(columns: dict[str, np.ndarray], policy: AugPolicy,
                        prefix: str = "aug_") -> np.ndarray:
    """Inverse of :func:`params_to_columns` for ``policy``'s layout."""
    dtype = param_dtype(policy)
    names = dtype.names or ()
    missing = [prefix + n for n in names if prefix + n not in columns]
    if missing:
        raise ValueError(f"params_from_columns: missing columns {missing}; pass the columns "
                         f"written by params_to_columns with this policy.")
    length = len(columns[prefix + names[0]]) if names else 0
    out = np.empty(length, dtype=dtype)
    for name in names:
        out[name] = np.asarray(columns[prefix + name]).astype(dtype[name])
    return out
