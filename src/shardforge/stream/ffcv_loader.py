"""FFCV loaders for shardforge ``.beton`` files with the ffcv-imagenet pipelines.

Train: ``RandomResizedCropRGBImageDecoder((res, res))`` (scale 0.08-1, ratio 3/4-4/3),
``RandomHorizontalFlip``, ``ToTensor``, [``ToDevice``], ``ToTorchImage``, normalisation
with the ImageNet mean/std. Validation: ``CenterCropRGBImageDecoder((res, res),
ratio=224/256)`` (the centre square of side ``ratio * short side``, resized to ``res``).

Normalisation runs in FFCV's ``NormalizeImage`` (float16, as the recipe) on a GPU when its
GPU kernel's dependencies (cupy, pytorch-pfn-extras) are importable, else in torch (float32)
on the batch's device.

Order and remainder:

* train: ``OrderOption.RANDOM`` (a fresh permutation per epoch from ``seed + epoch``; with
  ``distributed`` a ``DistributedSampler`` with that seed); ``QUASI_RANDOM`` only on request
  and never with ``distributed`` (FFCV raises NotImplementedError: upstream issue #92).
  ``drop_last=True``: the last incomplete batch of each epoch is dropped, on each rank.
* validation: ``OrderOption.SEQUENTIAL``, ``drop_last=False``: every sample is seen.
* ``distributed``: each rank reads ``ceil(N / world_size)`` samples; PyTorch's
  ``DistributedSampler`` (``drop_last=False``) pads the order by repeating the first
  samples, so up to ``world_size - 1`` samples are seen twice per epoch.

Corrupt samples: FFCV's compiled decoder ignores libjpeg-turbo's error code, so a corrupt
JPEG in the .beton is neither reported nor skipped: it comes out as an undefined image with
its label (a JPEG whose first 64 bytes were zeroed came out near-uniform, with no error:
tests/test_reliability_streaming.py). No skip or count is possible inside the compiled
pipeline. The guards: the
training job checks each .beton's size against ``summary.json`` before loading
(``shardforge.train.data.check_beton``); ``shardforge catalog verify NAME`` rehashes
every file (run it after copying a dataset); ``data.loader: wds`` checks each sample's
sha256 and skips corrupt ones.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from shardforge.ops.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize_images

DEFAULT_CROP_RATIO = 224 / 256
ORDERS = ("random", "quasi_random", "sequential")


def _gpu_normalize_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("cupy", "pytorch_pfn_extras"))


@dataclass
class FfcvBatches:
    """Iterable over ``(images, labels)`` of one .beton: normalised float B x 3 x res x res
    images and int64 labels, on ``device``.

    ``set_resolution`` changes the output size for the next epoch (progressive resizing:
    FFCV re-allocates its buffers per epoch); ``set_epoch`` chooses which epoch's order the
    next iteration uses (for resuming: the order of epoch ``e`` depends only on seed and ``e``).
    """

    loader: object            # ffcv.loader.Loader
    decoder: object           # the ResizedCropRGBImageDecoder
    device: torch.device
    normalize_in_torch: bool
    channels_last: bool

    def set_resolution(self, res: int) -> None:
        """Output ``res`` x ``res`` images from the next epoch on."""
        self.decoder.output_size = (res, res)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the traversal order of ``epoch``."""
        self.loader.next_epoch = epoch

    @property
    def epoch(self) -> int:
        """The epoch whose order the next iteration uses."""
        return int(self.loader.next_epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            if self.normalize_in_torch:
                images = normalize_images(images, self.channels_last)
            elif self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            # FFCV reuses its output buffers a few batches later: copy the labels out.
            yield images, labels.reshape(-1).to(torch.long, copy=True)


def make_ffcv_loader(beton_path: str, batch_size: int, num_workers: int, train: bool, res: int,
                     distributed: bool = False, seed: int = 0, device: str | torch.device | None = None,
                     crop_ratio: float = DEFAULT_CROP_RATIO, in_memory: bool = True,
                     order: str | None = None, channels_last: bool = False,
                     batches_ahead: int = 3,
                     crop_scale: tuple[float, float] = (0.08, 1.0)) -> FfcvBatches:
    """An FFCV ``Loader`` over ``beton_path`` with the ffcv-imagenet train or validation pipeline.

    ``beton_path`` must be a local file (a local disk or a shared-filesystem mount: FFCV
    memory-maps it). ``batch_size`` is per process; ``num_workers`` is FFCV's decoding
    thread count. ``distributed=True`` (use it when ``world_size > 1``; needs an initialised
    ``torch.distributed``) gives each rank its own part of every epoch. ``device`` is where
    batches land (default CPU; ``cuda:N`` adds ``ToDevice``). ``order`` is ``random``
    (train default), ``quasi_random`` (train, not distributed) or ``sequential`` (validation
    default). ``in_memory`` is FFCV's ``os_cache``. ``crop_scale`` is the random-resized
    crop's area range (train only; the recipe's (0.08, 1)). Remainder: see the module docstring
    (train drops the last partial batch; validation keeps it).
    Raises ValueError (bad argument, naming it) or FileNotFoundError (no such file).
    """
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import (
        NormalizeImage,
        RandomHorizontalFlip,
        ToDevice,
        ToTensor,
        ToTorchImage,
    )

    if "://" in str(beton_path):
        raise ValueError(f"FFCV reads local files only, got {beton_path!r}: copy the .beton to "
                         "local disk or a shared mount, or use the ray_data loader")
    if not os.path.isfile(beton_path):
        raise FileNotFoundError(f".beton file {beton_path!r} does not exist; run "
                                "`shardforge ingest` first or check the dataset path")
    if batch_size < 1 or num_workers < 1 or res < 1:
        raise ValueError(f"batch_size ({batch_size}), num_workers ({num_workers}) and res "
                         f"({res}) must all be >= 1")
    order = order or ("random" if train else "sequential")
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if order == "quasi_random" and distributed:
        raise ValueError("order quasi_random is not supported by FFCV with distributed=True "
                         "(upstream issue #92); use order random")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    on_gpu = dev.type == "cuda"

    if train:
        decoder = RandomResizedCropRGBImageDecoder((res, res), scale=tuple(crop_scale))
        image_pipeline: list = [decoder, RandomHorizontalFlip(), ToTensor()]
    else:
        decoder = CenterCropRGBImageDecoder((res, res), ratio=crop_ratio)
        image_pipeline = [decoder, ToTensor()]
    label_pipeline: list = [IntDecoder(), ToTensor()]
    if on_gpu:
        image_pipeline.append(ToDevice(dev, non_blocking=True))
        label_pipeline.append(ToDevice(dev, non_blocking=True))
    image_pipeline.append(ToTorchImage())
    normalize_in_torch = not (on_gpu and _gpu_normalize_available())
    if not normalize_in_torch:
        image_pipeline.append(NormalizeImage(IMAGENET_MEAN, IMAGENET_STD, np.float16))

    option = {"random": OrderOption.RANDOM, "quasi_random": OrderOption.QUASI_RANDOM,
              "sequential": OrderOption.SEQUENTIAL}[order]
    loader = Loader(beton_path, batch_size=batch_size, num_workers=num_workers, order=option,
                    os_cache=in_memory, drop_last=train, distributed=distributed, seed=seed,
                    batches_ahead=batches_ahead,
                    pipelines={"image": image_pipeline, "label": label_pipeline})
    return FfcvBatches(loader, decoder, dev, normalize_in_torch, channels_last)
