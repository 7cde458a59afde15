"""Layer: augment (beside models and ops). Replayable augmentations for dataset
reinforcement (ImageNet+), shared by generation and replay.

Each stored augmentation of an image is one fixed-width *parameter record*: sampling
(:func:`sample_params`) draws the records from a seeded numpy generator, replay
(:func:`apply_params`) turns an image plus one record into the exact same uint8 view every
time. Only the records are stored next to the teacher's outputs; the student replays a
record to see the pixels the teacher saw.

Default policy: ImageNet+'s recommended setting, RandomResizedCrop(224) + horizontal flip +
RandAugment(2 ops, magnitude 9) + RandomErasing(p=0.25), no mixing (Faghri et al.,
"Reinforce Data, Multiply Impact", ICCV 2023, Sec. 4 / Table 2 "RRC+RA/RE"; the stored
parameters follow the paper's list: partner id, RRC (i, j, h, w), flip, RandAugment
(op, signed magnitude) pairs, RandomErasing (x, y, h, w) or none, MixUp lambda, CutMix
[lambda, x1, y1, x2, y2]).

Replay order, on uint8 ``3 x H x W`` tensors::

    RRC (resized_crop, bilinear, antialias) -> hflip -> RandAugment ops
    -> RandomErasing -> MixUp -> CutMix

RandomErasing note: torchvision's usual ImageNet pipeline erases the normalised float
tensor, so its default ``value=0`` paints the dataset *mean* colour; ml-dr erases after
ToTensor and before Normalize (``dr/transforms.py`` ``TRANSFORMATION_TO_NAME``), so 0 is
black. Here erasing runs on the uint8 view and paints ``erasing_value`` (default 0: black,
as ml-dr).

Mixing note (ml-dr's pair transforms): a mixing record carries its partner's *position* in
the shard (the parent tar's order; possibly the image itself, drawn among the shard's
samples) and the partner's own view (``p_*`` fields: crop, flip, RandAugment, erasing drawn
for the partner's size). :func:`apply_params` takes the partner's source image and
rebuilds that view (:func:`partner_view`), then MixUp (``lam = Beta(1, 1) / 2``) and CutMix.

Modules: :mod:`.policy` (the policy and sampling the records), :mod:`.records` (the
record layout and its columns), :mod:`.ops` (RandAugment ops and replay). A low layer
(beside models and ops): it imports nothing of shardforge.
"""

from shardforge.augment.ops import (
    RANDAUGMENT_OPS,
    apply_batch,
    apply_params,
    apply_randaugment_op,
    partner_view,
    randaugment_magnitudes,
)
from shardforge.augment.policy import NUM_MAGNITUDE_BINS, AugPolicy
from shardforge.augment.records import (
    PARAM_FIELDS,
    ParamField,
    param_dtype,
    param_fields,
    params_from_columns,
    params_nbytes,
    params_to_columns,
)
from shardforge.augment.sampling import image_rng, sample_params

__all__ = ["NUM_MAGNITUDE_BINS", "PARAM_FIELDS", "RANDAUGMENT_OPS", "AugPolicy", "ParamField",
           "apply_batch", "apply_params", "apply_randaugment_op", "image_rng", "param_dtype",
           "param_fields", "params_from_columns", "params_nbytes", "params_to_columns",
           "partner_view", "randaugment_magnitudes", "sample_params"]
