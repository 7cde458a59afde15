"""A shardforge dataset as Ray Data datasets for Ray Train (``TorchTrainer(datasets=...)``).

Flow::

    tars (wds/NAME-SPLIT-*.tar; local, shared mount or s3://)
      -> ray.data.read_webdataset(decoder=decode_wds_sample)     rows: image bytes, size, label
      -> map_batches(preprocess_batch)  on Ray Data's CPU workers: decode + crop + flip,
                                        uint8 res x res x 3 (train: random-resized crop at
                                        ``max_res``; val: centre crop ratio 224/256 at ``res``)
      -> TorchTrainer(datasets={"train", "val"}, dataset_config=data_config())
      -> each worker: ray.train.get_dataset_shard(name).iter_torch_batches(...)  (iter_batches)

Ray Train splits every dataset with ``streaming_split(world_size, equal=True)``
(:class:`ray.train.DataConfig`): each worker gets ``floor(N / world_size)`` rows per epoch
and up to ``world_size - 1`` rows are dropped to equalise. On top, training batches use
``drop_last=True`` (each worker's last partial batch is dropped); validation keeps it.

Shuffling is streaming: tar files in a new random order each epoch (``shuffle="files"``)
plus a local shuffle buffer per worker (``shuffle_buffer`` samples); no global shuffle.
The pipeline re-executes each epoch, so random crops differ per epoch; there is no
order state to restore on resume. Progressive resizing: train crops are made at
``max_res`` and the worker resizes the batch to the epoch's resolution
(``F.interpolate(antialias=True)``) before normalising.

Corrupt samples: :func:`preprocess_batch` drops a row whose bytes do not decode (default
``on_corrupt="skip"``, logged at WARNING on the Ray Data worker) or raises
(``"strict"``). Dropping cannot unbalance the workers: ``streaming_split(equal=True)``
hands every worker the same number of the rows that remain. There is no sha256 check on
this path (the tar members carry none; ``shardforge catalog verify`` is the guard) and
the skipped rows are not counted in ``metrics.jsonl`` (they are dropped on Ray Data's
workers, not the trainer's): use ``data.loader: wds`` for both.

Ray Data needs ``pandas`` (the ``ray[data]`` / ``ray[train]`` extras); this module imports
Ray Data lazily, so the pure functions here work without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from shardforge.ops.normalize import normalize_images
from shardforge.storage import resolve
from shardforge.stream.ffcv_loader import DEFAULT_CROP_RATIO

log = logging.getLogger(__name__)

#: Columns of the rows :func:`decode_wds_sample` makes.
ROW_COLUMNS = ("image", "is_png", "width", "height", "label")


def decode_wds_sample(sample: dict) -> dict:
    """``read_webdataset`` decoder for shardforge tars: keep the encoded image, parse the rest.

    Input: one sample's members (``jpg`` or ``png``, ``cls``, ``json``, ``__key__``...).
    Output: ``image`` (bytes, still encoded), ``is_png``, ``width``/``height`` (stored size,
    from the json), ``label`` (int). Raises ValueError naming the key when a member is missing.
    """
    key = sample.get("__key__", "?")
    if "jpg" in sample:
        data, is_png = sample["jpg"], False
    elif "png" in sample:
        data, is_png = sample["png"], True
    else:
        raise ValueError(f"WebDataset sample {key!r} has no .jpg or .png member; is this a "
                         "shardforge tar?")
    if "json" not in sample or "cls" not in sample:
        raise ValueError(f"WebDataset sample {key!r} lacks its .json or .cls member")
    meta = json.loads(sample["json"])
    return {"image": bytes(data), "is_png": is_png, "width": int(meta["width"]),
            "height": int(meta["height"]), "label": int(sample["cls"])}


def preprocess_batch(batch: dict[str, np.ndarray], train: bool, res: int,
                     crop_ratio: float = DEFAULT_CROP_RATIO, seed: int | None = None,
                     crop_scale: tuple[float, float] = (0.08, 1.0),
                     on_corrupt: str = "skip") -> dict[str, np.ndarray]:
    """Decode and crop a batch of :func:`decode_wds_sample` rows (numpy batch format).

    Train: random-resized crop (area ``crop_scale``, ratio 3/4-4/3) to ``res`` and a horizontal
    flip with probability 1/2, from ``np.random.default_rng(seed)`` (``seed=None``: fresh
    entropy, so every epoch differs). Val: centre square of ``crop_ratio`` x short side,
    resized to ``res``. Returns ``image`` (uint8, B x res x res x 3) and ``label`` (int64).
    A row that does not decode is dropped from the output (``on_corrupt="skip"``) or raises
    :class:`~shardforge.stream.faults.CorruptSampleError` (``"strict"``).
    """
    import cv2

    from shardforge.formats.decode import CenterCrop, DecodeError, RandomResizedCrop, decode_crop
    from shardforge.stream.faults import CorruptSampleError, check_policy, fix

    check_policy(on_corrupt)

    transform = (RandomResizedCrop(res, scale=tuple(crop_scale)) if train
                 else CenterCrop(res, ratio=crop_ratio))
    rng = np.random.default_rng(seed)
    widths = np.asarray(batch["width"], np.int64)
    heights = np.asarray(batch["height"], np.int64)
    boxes, flips = transform.plan(widths, heights, rng)
    out = np.empty((len(widths), res, res, 3), dtype=np.uint8)
    good = np.ones(len(widths), bool)
    for i, (w, h) in enumerate(zip(widths.tolist(), heights.tolist(), strict=True)):
        try:
            decode_crop(batch["image"][i], bool(batch["is_png"][i]), w, h,
                        tuple(int(v) for v in boxes[i]), out[i], flip=bool(flips[i]))
        except (DecodeError, cv2.error) as exc:
            if on_corrupt == "strict":
                raise CorruptSampleError(f"a sample of this Ray Data batch (label "
                                         f"{int(batch['label'][i])}) does not decode: {exc}; "
                                         f"{fix()}") from exc
            good[i] = False
    labels = np.asarray(batch["label"], dtype=np.int64)
    if not good.all():
        log.warning("dropped %d corrupt sample(s) of a batch of %d (on_corrupt=skip)",
                    int((~good).sum()), len(good))
        return {"image": out[good], "label": labels[good]}
    return {"image": out, "label": labels}


def read_split(tar_urls: Sequence[str], shuffle_files: bool = False, seed: int | None = None):
    """``ray.data.read_webdataset`` over shardforge tars (all on one filesystem), rows of
    :data:`ROW_COLUMNS`. URLs may carry an S3 endpoint query (``?endpoint_override=...``)."""
    import ray.data

    if not tar_urls:
        raise ValueError("no WebDataset tars given; does the dataset have this split?")
    locs = [resolve(u) for u in tar_urls]
    shuffle = None
    if shuffle_files:
        shuffle = ray.data.FileShuffleConfig(seed=seed) if seed is not None else "files"
    return ray.data.read_webdataset([loc.path for loc in locs], filesystem=locs[0].fs,
                                    decoder=decode_wds_sample, shuffle=shuffle)


def make_split_dataset(tar_urls: Sequence[str], train: bool, res: int,
                       crop_ratio: float = DEFAULT_CROP_RATIO,
                       crop_scale: tuple[float, float] = (0.08, 1.0), batch_size: int = 64):
    """A Ray Data dataset of decoded, cropped ``image``/``label`` batches of one split."""
    ds = read_split(tar_urls, shuffle_files=train)
    return ds.map_batches(preprocess_batch, batch_format="numpy", batch_size=batch_size,
                          fn_kwargs={"train": train, "res": res, "crop_ratio": crop_ratio,
                                     "crop_scale": tuple(crop_scale)})


def make_ray_datasets(train_tars: Sequence[str], val_tars: Sequence[str], train_res: int,
                      val_res: int, crop_ratio: float = DEFAULT_CROP_RATIO,
                      crop_scale: tuple[float, float] = (0.08, 1.0)) -> dict:
    """``{"train": ..., "val": ...}`` for ``TorchTrainer(datasets=...)``.

    ``train_res`` should be the largest training resolution (workers downscale per epoch).
    """
    return {"train": make_split_dataset(train_tars, True, train_res, crop_scale=crop_scale),
            "val": make_split_dataset(val_tars, False, val_res, crop_ratio)}


def data_config():
    """The ``DataConfig`` used: split both datasets across workers (``streaming_split``,
    ``equal=True``)."""
    from ray.train import DataConfig

    return DataConfig(datasets_to_split="all")


def to_model_input(images: torch.Tensor, res: int | None = None,
                   channels_last: bool = False) -> torch.Tensor:
    """uint8 B x H x W x 3 batch -> normalised float B x 3 x res x res (resized if needed)."""
    x = images.permute(0, 3, 1, 2)
    if res is not None and tuple(x.shape[-2:]) != (res, res):
        x = F.interpolate(x.float(), size=(res, res), mode="bilinear", antialias=True,
                          align_corners=False).clamp_(0, 255)
    return normalize_images(x, channels_last)


def iter_batches(shard, batch_size: int, train: bool, device: torch.device,
                 res: int | None = None, shuffle_buffer: int | None = None,
                 prefetch_batches: int = 2, channels_last: bool = False
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, labels)`` of one epoch of this worker's shard (a Ray ``DataIterator``).

    Uses ``shard.iter_torch_batches`` (batches land on ``device``); train batches are
    shuffled through a local buffer and the last partial batch is dropped.
    """
    batches = shard.iter_torch_batches(
        batch_size=batch_size, drop_last=train, device=device,
        dtypes={"image": torch.uint8, "label": torch.int64}, prefetch_batches=prefetch_batches,
        local_shuffle_buffer_size=shuffle_buffer if train and shuffle_buffer else None)
    for batch in batches:
        yield to_model_input(batch["image"], res, channels_last), batch["label"]
