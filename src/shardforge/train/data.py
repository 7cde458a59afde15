"""Per-worker training and validation batches from the configured loader."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from shardforge.storage import resolve
from shardforge.train.config import TrainConfig
from shardforge.train.dataset import DatasetInfo
from shardforge.train.session import Session
from shardforge.train.targets import Batch


class EpochData:
    """Batches for one worker: ``train_epoch(epoch, res)``, ``val_batches()``."""

    #: Whether training batches carry ``sample_ids`` (stored soft targets need them).
    provides_sample_ids = False

    def train_steps(self) -> int:
        """Training steps per epoch on this worker (exact for FFCV, an estimate for Ray Data)."""
        raise NotImplementedError

    def train_epoch(self, epoch: int, res: int) -> Iterator[Batch]:
        raise NotImplementedError

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def state(self) -> dict:
        """Loader state saved in checkpoints."""
        return {}


def _local_file(url: str, what: str) -> str:
    loc = resolve(url)
    if not loc.is_local:
        raise ValueError(f"the FFCV loader reads {what} from a local file, but it is at {url}; "
                         "mount the dataset on a shared filesystem or use data.loader: ray_data")
    return loc.path


class FfcvEpochData(EpochData):
    """FFCV loaders over ``beton/NAME-{train,val}.beton`` (see shardforge.stream.ffcv_loader)."""

    def __init__(self, cfg: TrainConfig, info: DatasetInfo, session: Session,
                 channels_last: bool) -> None:
        from shardforge.stream.ffcv_loader import make_ffcv_loader

        for split in ("train", "val"):
            info.require_split(split)
        distributed = session.world_size > 1
        common = {"num_workers": cfg.data.num_workers, "distributed": distributed,
                  "seed": cfg.training.seed, "device": session.device,
                  "in_memory": cfg.data.in_memory, "channels_last": channels_last}
        self.train = make_ffcv_loader(_local_file(info.betons["train"], "the train .beton"),
                                      cfg.training.batch_size, train=True,
                                      res=cfg.resolution.min_res,
                                      crop_scale=cfg.training.crop_scale, **common)
        self.val = make_ffcv_loader(_local_file(info.betons["val"], "the val .beton"),
                                    cfg.validation.batch_size, train=False,
                                    res=cfg.validation.res, crop_ratio=cfg.validation.crop_ratio,
                                    **common)

    def train_steps(self) -> int:
        return len(self.train)

    def train_epoch(self, epoch: int, res: int) -> Iterator[Batch]:
        self.train.set_resolution(res)
        self.train.set_epoch(epoch)
        for images, labels in self.train:
            yield Batch(images, labels)

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.val.set_epoch(0)
        yield from self.val

    def state(self) -> dict:
        return {"kind": "ffcv", "next_epoch": self.train.epoch, "seed": self.train.loader.seed}


class RayDataEpochData(EpochData):
    """This worker's Ray Data shards (``TorchTrainer(datasets=...)``; shardforge.stream.ray_data)."""

    def __init__(self, cfg: TrainConfig, info: DatasetInfo, session: Session,
                 channels_last: bool) -> None:
        for split in ("train", "val"):
            info.require_split(split)
        self.cfg, self.session, self.channels_last = cfg, session, channels_last
        self.train_shard = session.dataset_shard("train")
        self.val_shard = session.dataset_shard("val")
        per_worker = info.counts["train"] // session.world_size   # streaming_split(equal=True)
        self.steps = per_worker // cfg.training.batch_size

    def train_steps(self) -> int:
        return self.steps

    def train_epoch(self, epoch: int, res: int) -> Iterator[Batch]:
        from shardforge.stream.ray_data import iter_batches

        for images, labels in iter_batches(
                self.train_shard, self.cfg.training.batch_size, True, self.session.device,
                res=res, shuffle_buffer=self.cfg.data.shuffle_buffer,
                prefetch_batches=self.cfg.data.num_workers, channels_last=self.channels_last):
            yield Batch(images, labels)

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from shardforge.stream.ray_data import iter_batches

        yield from iter_batches(self.val_shard, self.cfg.validation.batch_size, False,
                                self.session.device, prefetch_batches=self.cfg.data.num_workers,
                                channels_last=self.channels_last)

    def state(self) -> dict:
        return {"kind": "ray_data"}


def make_epoch_data(cfg: TrainConfig, info: DatasetInfo, session: Session,
                    channels_last: bool) -> EpochData:
    """The :class:`EpochData` for ``cfg.data.loader``."""
    if cfg.data.loader == "ffcv":
        return FfcvEpochData(cfg, info, session, channels_last)
    return RayDataEpochData(cfg, info, session, channels_last)
