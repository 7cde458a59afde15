"""Per-worker training and validation batches from the configured loader."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch

from shardforge.layout.info import DatasetInfo
from shardforge.storage import resolve
from shardforge.train.config import TrainConfig
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

    def skipped(self) -> dict[str, dict] | None:
        """Corrupt samples skipped in the last train epoch and validation pass, per split
        (:meth:`shardforge.stream.faults.FaultReport.to_dict`), or None when this loader
        does not skip (FFCV and Ray Data: see docs/reliability.md)."""
        return None


def _local_file(url: str, what: str) -> str:
    loc = resolve(url)
    if not loc.is_local:
        raise ValueError(f"the FFCV loader reads {what} from a local file, but it is at {url}; "
                         "copy the dataset to every node's local disk with `shardforge stage "
                         "REF --to /local/dir` and train with --data /local/dir, mount it on a "
                         "shared filesystem, or use data.loader: wds or ray_data")
    return loc.path


def check_beton(path: str, dataset_url: str, split: str, name: str) -> None:
    """Raise ``ShardReadError`` (one line: file, problem, fix) when the split's .beton is
    missing or not the size ``summary.json`` records. The only integrity check on the FFCV
    path: FFCV's compiled decoder does not report a corrupt JPEG (libjpeg's error code is
    ignored: the sample comes out as an undefined image with its label), so
    corrupt samples are neither skipped nor counted there; `shardforge catalog verify`
    (a full rehash) is the guard before training, or ``data.loader: wds``."""
    import json

    from shardforge.layout.reader import ShardReadError

    fix = (f"re-stage it from a good copy or rebuild the dataset (rerun the same ingest); "
           f"`shardforge catalog verify {name}` rehashes every file")
    if not os.path.exists(path):
        raise ShardReadError(f"{path} is missing; {fix}")
    try:
        summary = json.loads(resolve(dataset_url).join("summary.json").read_bytes())
        want = summary["formats"]["beton"][split]["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return      # no record to check against (a hand-made dataset)
    got = os.path.getsize(path)
    if got != want:
        raise ShardReadError(f"{path} has {got} bytes but summary.json records {want}: it is "
                             f"truncated or not the file this dataset was built with; {fix}")


def preflight(cfg: TrainConfig, info: DatasetInfo) -> None:
    """On the driver, before any worker starts: every file the configured loader reads
    for ``train`` and ``val`` exists with its recorded size (a ``stat`` each; a metadata
    request each on object stores). Raises
    :class:`~shardforge.layout.reader.ShardReadError` (one line: file, problem, fix)."""
    if cfg.data.loader == "ffcv" and info.reinforce is None:
        for split in ("train", "val"):
            url = info.betons.get(split)
            if url and resolve(url).is_local:
                check_beton(resolve(url).path, info.url, split, info.name)
        return
    from shardforge.layout.dataset import open_dataset
    from shardforge.layout.reader import check_shards, shard_min_sizes
    from shardforge.stream.repair import recorded_sizes

    dataset = open_dataset(info.url)
    for split in ("train", "val"):
        if split not in dataset.splits:
            continue
        idx = dataset.split(split)
        check_shards(idx.shard_urls, recorded_sizes(dataset, idx),
                     shard_min_sizes(len(idx.shard_urls), idx.shard, idx.offset,
                                     idx.size).tolist())


class FfcvEpochData(EpochData):
    """FFCV loaders over ``beton/NAME-{train,val}.beton`` (see shardforge.stream.ffcv_loader).
    Each .beton's size is checked against ``summary.json`` first (:func:`check_beton`)."""

    def __init__(self, cfg: TrainConfig, info: DatasetInfo, session: Session,
                 channels_last: bool) -> None:
        from shardforge.stream.ffcv_loader import make_ffcv_loader

        for split in ("train", "val"):
            info.require_split(split)
            check_beton(_local_file(info.betons[split], f"the {split} .beton"), info.url,
                        split, info.name)
        distributed = session.world_size > 1
        common = {"num_workers": cfg.data.num_workers, "distributed": distributed,
                  "seed": cfg.training.seed, "device": session.device,
                  "in_memory": cfg.data.in_memory, "channels_last": channels_last}
        self.train = make_ffcv_loader(_local_file(info.betons["train"], "the train .beton"),
                                      cfg.training.batch_size, train=True,
                                      res=cfg.resolution.min_res,
                                      crop_scale=cfg.training.loader_crop_scale, **common)
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


class WdsEpochData(EpochData):
    """This worker's share of the WebDataset tars through :mod:`shardforge.stream.wds_loader`:
    equal batches per rank (the split padded to a multiple of the world size), a seeded
    per-epoch order, DCT-domain decoding, and each sample's id (its .beton row) per batch."""

    provides_sample_ids = True

    def __init__(self, cfg: TrainConfig, info: DatasetInfo, session: Session,
                 channels_last: bool) -> None:
        from shardforge.formats.decode import CenterCrop
        from shardforge.stream.wds_loader import make_loader

        for split in ("train", "val"):
            info.require_split(split)
        self.cfg, self.device, self.channels_last = cfg, session.device, channels_last
        self.url = info.url
        self.common = {"rank": session.rank, "world_size": session.world_size,
                       "num_workers": cfg.data.num_workers, "seed": cfg.training.seed,
                       "layout": "hwc", "pin_memory": session.device.type == "cuda",
                       "on_corrupt": cfg.data.on_corrupt, "verify": cfg.data.verify,
                       "worker_kind": cfg.data.worker_kind}
        self.train = self._train_loader(cfg.resolution.min_res)
        self.val = make_loader(info.url, "val", cfg.validation.batch_size,
                               transform=CenterCrop(cfg.validation.res,
                                                    cfg.validation.crop_ratio),
                               order="sequential", **self.common)

    def _train_loader(self, res: int):
        """The train loader for crops of ``res`` px. Its workers persist across epochs (the
        stream's position is shared with them) and are replaced only when progressive
        resizing changes ``res``, which is baked into their transform. Restarting them every
        epoch cost a worker start-up and a first batch per worker each epoch: measured on an
        H200 with 12 workers, demo training at 128 px went from 5.4-6.2k to 10.8k img/s
        (BENCHMARKS.md, "GPU paths")."""
        from shardforge.stream.wds_loader import make_loader

        return make_loader(self.url, "train", self.cfg.training.batch_size, with_ids=True,
                           transform=self._crop(res), persistent_workers=True, **self.common)

    def _crop(self, res: int):
        from shardforge.formats.decode import RandomResizedCrop

        return RandomResizedCrop(res, scale=self.cfg.training.loader_crop_scale)

    def _images(self, images: torch.Tensor) -> torch.Tensor:
        from shardforge.stream.ray_data import to_model_input

        return to_model_input(images.to(self.device, non_blocking=True),
                              channels_last=self.channels_last)

    def train_steps(self) -> int:
        return len(self.train)

    def train_epoch(self, epoch: int, res: int) -> Iterator[Batch]:
        if self.train.stream.transform.output_size != (res, res):
            self.train = self._train_loader(res)
        self.train.set_epoch(epoch)
        for images, labels, ids in self.train:
            yield Batch(self._images(images), labels, ids)

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.val.set_epoch(0)
        for images, labels in self.val:
            yield self._images(images), labels

    def state(self) -> dict:
        return {"kind": "wds", **self.train.state_dict()}

    def skipped(self) -> dict[str, dict] | None:
        return {"train": self.train.faults.to_dict(), "val": self.val.faults.to_dict()}


class ReplayEpochData(WdsEpochData):
    """A reinforced dataset: the parent's train images with replayed stored augmentations
    and their teacher targets (:mod:`shardforge.stream.replay`); validation as
    :class:`WdsEpochData` on the parent's val split. Views are resized to the epoch's
    resolution when it differs from the stored policy's size."""

    def __init__(self, cfg: TrainConfig, info: DatasetInfo, session: Session,
                 channels_last: bool) -> None:
        super().__init__(cfg, info, session, channels_last)
        from shardforge.augment import AugPolicy
        from shardforge.stream.index_cache import open_indexed
        from shardforge.stream.replay import ReplayStream, load_reinforced_split
        from shardforge.stream.wds_loader import WdsLoader

        assert info.reinforce is not None
        parent = open_indexed(info.url)
        stored = load_reinforced_split(info.reinforce["root"], info.reinforce, parent)
        stream = ReplayStream(parent, stored, AugPolicy.from_dict(info.reinforce["policy"]),
                              info.num_classes, info.reinforce["split"],
                              cfg.training.batch_size, rank=session.rank,
                              world_size=session.world_size, seed=cfg.training.seed)
        self.train = WdsLoader(stream, num_workers=cfg.data.num_workers,
                               worker_kind=cfg.data.worker_kind, persistent_workers=True,
                               pin_memory=session.device.type == "cuda")

    def train_epoch(self, epoch: int, res: int) -> Iterator[Batch]:
        from shardforge.stream.ray_data import to_model_input

        self.train.set_epoch(epoch)
        for views, labels, targets, ids in self.train:
            hwc = views.to(self.device, non_blocking=True).permute(0, 2, 3, 1)   # a view
            yield Batch(to_model_input(hwc, res, self.channels_last), labels, ids, targets)


def make_epoch_data(cfg: TrainConfig, info: DatasetInfo, session: Session,
                    channels_last: bool) -> EpochData:
    """The :class:`EpochData` for ``cfg.data.loader``."""
    if info.reinforce is not None:
        return ReplayEpochData(cfg, info, session, channels_last)
    if cfg.data.loader == "ffcv":
        return FfcvEpochData(cfg, info, session, channels_last)
    if cfg.data.loader == "wds":
        return WdsEpochData(cfg, info, session, channels_last)
    return RayDataEpochData(cfg, info, session, channels_last)
