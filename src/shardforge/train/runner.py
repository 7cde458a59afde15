"""Launching a training run: on Ray Train (``TorchTrainer``) or as local processes."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from dataclasses import dataclass

import torch

from shardforge.catalog.lookup import resolve_dataset
from shardforge.layout.info import DatasetInfo, load_dataset_info
from shardforge.models.checkpoint import latest_checkpoint
from shardforge.storage import resolve
from shardforge.train.config import TrainConfig
from shardforge.train.metrics import read_metrics
from shardforge.train.storage_path import run_storage

_log = logging.getLogger(__name__)

BACKENDS = ("ray", "local")


class RunExistsError(ValueError):
    """The run directory already holds checkpoints and ``--resume`` was not given."""


@dataclass(frozen=True)
class RunPlan:
    """A prepared run: its name, directory and the payload every worker gets."""

    name: str
    storage_path: str
    run_dir: str
    payload: dict
    resume_from: str | None


def default_run_name(config_path: str, dataset: DatasetInfo) -> str:
    """``CONFIG-DATASET``, e.g. ``demo_cpu-demo``."""
    stem = os.path.splitext(os.path.basename(config_path))[0]
    return f"{stem}-{dataset.name or 'data'}"


def absolutize_paths(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with local file paths in ``targets`` made absolute (relative to this process's
    working directory): Ray Train workers run in another working directory."""
    t = cfg.targets
    fixed = {k: os.path.abspath(os.path.expanduser(v))
             for k, v in (("path", t.path), ("teacher_checkpoint", t.teacher_checkpoint),
                          ("teacher_weights", t.teacher_weights))
             if v and "://" not in v}
    return dataclasses.replace(cfg, targets=dataclasses.replace(t, **fixed)) if fixed else cfg


def for_dataset(cfg: TrainConfig, info: DatasetInfo) -> TrainConfig:
    """``cfg`` adjusted to the dataset: a reinforced dataset trains on its replayed views and
    stored teacher targets (``data.loader: wds``, ``targets.kind: reinforced``; a note says
    so). Raises ValueError for target kinds that cannot apply to it."""
    if info.reinforce is None:
        if cfg.targets.kind == "reinforced":
            raise ValueError(f"targets.kind=reinforced needs a reinforced dataset; "
                             f"{info.name!r} is not one (build it with pipelines/reinforce.py)")
        return cfg
    if cfg.targets.kind not in ("hard", "reinforced"):
        raise ValueError(f"dataset {info.name!r} is reinforced: it brings its own teacher "
                         f"targets, so targets.kind={cfg.targets.kind} does not apply; use "
                         "targets.kind hard or reinforced, or train on its parent")
    if cfg.targets.kind == "hard" or cfg.data.loader != "wds":
        _log.info("%s: a reinforced dataset; training on replayed stored augmentations with "
                  "the teacher's soft targets (data.loader=wds, targets.kind=reinforced)",
                  info.name)
    return dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, loader="wds"),
        targets=dataclasses.replace(cfg.targets, kind="reinforced"))


def card_mismatch(cfg: TrainConfig, info: DatasetInfo, config_path: str) -> str | None:
    """A warning naming the config and both datasets when ``cfg.data.card`` names another
    dataset than ``info`` (a reinforced dataset matches by its parent, whose images it
    replays); None when they match or the config names no card."""
    expected = cfg.data.card
    if expected is None:
        return None
    names = {info.name}
    if info.reinforce is not None and info.reinforce.get("parent_name"):
        names.add(info.reinforce["parent_name"])
    if expected in names:
        return None
    return (f"warning: {config_path} is the recipe for data from card {expected!r}, but "
            f"dataset {info.name!r} ({info.url}) is another build; its resolution and "
            f"encoding may differ from what the recipe's reference numbers assume "
            f"(datasets/{expected}.yaml, docs/parity.md). Train on {expected!r} "
            "(shardforge build " + expected + "), or set data.card (--set data.card=null "
            "to skip the check)")


def prepare_run(cfg: TrainConfig, data_ref: str, config_path: str = "config",
                name: str | None = None, storage_path: str | None = None,
                resume: bool = False) -> RunPlan:
    """Resolve the dataset and the run directory ``STORAGE/NAME``; check resume rules.

    ``STORAGE`` is ``storage_path``, else ``cfg.run.storage_path``, else
    ``$SHARDFORGE_RUNS``, else ``$SHARDFORGE_HOME/runs``
    (:func:`~shardforge.train.storage_path.run_storage`: a relative one raises
    ValueError naming the setting and the fix under ``ray job submit``).

    Raises ValueError for stored soft targets (``topk``/``dense``) with a loader other than
    ``wds`` (the one that yields sample ids) and for datasets that do not resolve.
    Raises :class:`RunExistsError` when the run directory has checkpoints and ``resume`` is
    False (the fix: ``--resume``, or another ``--name``). With ``resume`` and no checkpoint,
    the run starts from scratch.
    """
    if cfg.targets.kind in ("topk", "dense") and cfg.data.loader != "wds":
        raise ValueError(f"targets.kind={cfg.targets.kind} needs per-sample ids in each batch, "
                         f"which the {cfg.data.loader} loader does not provide; set "
                         "data.loader: wds (--set data.loader=wds)")
    info = load_dataset_info(resolve_dataset(data_ref))
    mismatch = card_mismatch(cfg, info, config_path)
    if mismatch:
        _log.warning(mismatch)
    cfg = for_dataset(cfg, info)
    name = name or cfg.run.name or default_run_name(config_path, info)
    storage = run_storage(storage_path or cfg.run.storage_path,
                          "--storage" if storage_path else f"{config_path}: run.storage_path")
    root = resolve(storage)
    run_dir = root.join(name).url
    latest = latest_checkpoint(run_dir)
    if latest and not resume:
        raise RunExistsError(f"run {run_dir} already has checkpoints (newest {latest}); pass "
                             "--resume to continue it or --name NEW to start another run")
    payload = {"config": absolutize_paths(cfg).to_dict(), "dataset": info.to_dict(),
               "run_dir": run_dir}
    return RunPlan(name, root.url, run_dir, payload, latest if resume else None)


def run_with_ray(plan: RunPlan, cfg: TrainConfig) -> list[dict]:
    """Run on the connected Ray cluster with ``TorchTrainer``; returns the metrics history.

    Worker failures restart the worker group from the newest checkpoint up to
    ``run.max_failures`` times; a later ``--resume`` with the same name continues the run
    (Ray Train restores from the run directory's checkpoint snapshot).
    """
    try:
        from ray.train import (
            CheckpointConfig,
            FailureConfig,
            LoggingConfig,
            RunConfig,
            ScalingConfig,
        )
        from ray.train.torch import TorchTrainer
    except ImportError as exc:
        raise RuntimeError(f"Ray Train is not importable ({exc}); install the ray[train] extra "
                           "(it adds pandas, tensorboardX) or use --backend local") from exc
    from shardforge.engine.cluster import ray_log_level
    from shardforge.train.loop import ray_train_loop

    root = resolve(plan.storage_path)
    storage = ({"storage_path": root.path} if root.is_local else
               {"storage_path": root.path, "storage_filesystem": root.fs})
    run_config = RunConfig(name=plan.name, failure_config=FailureConfig(
        max_failures=cfg.run.max_failures), checkpoint_config=CheckpointConfig(
        num_to_keep=cfg.run.num_to_keep), **storage,
        # Ray Train's INFO lines (resource requests, the worker group's ranks, process
        # group set-up) off unless SHARDFORGE_RAY_LOG_LEVEL asks; its warnings still show
        logging_config=LoggingConfig(log_level=ray_log_level()))
    scaling = ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                            resources_per_worker={"CPU": cfg.scaling.cpus_per_worker,
                                                  **({"GPU": 1} if cfg.scaling.use_gpu else {})})
    kwargs = {}
    if plan.payload["config"]["data"]["loader"] == "ray_data":   # as adjusted by prepare_run
        from shardforge.stream.ray_data import data_config, make_ray_datasets

        info = DatasetInfo.from_dict(plan.payload["dataset"])
        for split in ("train", "val"):
            info.require_split(split)
        kwargs = {"datasets": make_ray_datasets(info.tars["train"], info.tars["val"],
                                                cfg.resolution.max_res, cfg.validation.res,
                                                cfg.validation.crop_ratio,
                                                cfg.training.loader_crop_scale),
                  "dataset_config": data_config()}
    # Ray Train's PreemptionWatcher (node-drain observability, logs only) makes the core
    # worker print an ERROR line about max_restarts at every training start; off unless
    # the user turns it on. Ray Train propagates this variable to its controller.
    os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
    trainer = TorchTrainer(ray_train_loop, train_loop_config=plan.payload,
                           scaling_config=scaling, run_config=run_config, **kwargs)
    trainer.fit()
    return read_metrics(plan.run_dir)


PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local_worker(rank: int, world_size: int, port: int, plan: RunPlan, cfg: TrainConfig) -> None:
    import torch.distributed as dist

    from shardforge.train.loop import run_worker
    from shardforge.train.session import LocalSession

    session = LocalSession(plan.run_dir, rank, world_size, cfg.scaling.use_gpu,
                           cfg.run.num_to_keep)
    if session.device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    if world_size > 1:
        backend = "nccl" if session.device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(session.device)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world_size)
    try:
        run_worker(plan.payload, session)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_locally(plan: RunPlan, cfg: TrainConfig) -> list[dict]:
    """Run ``scaling.num_workers`` processes on this machine (torch.distributed over
    127.0.0.1; gloo on CPU, nccl on GPUs) without Ray; returns the metrics history.

    For debugging and machines without Ray Train; no automatic restarts (rerun with
    ``--resume``).
    """
    n = cfg.scaling.num_workers
    if n == 1:
        _local_worker(0, 1, 0, plan, cfg)
    else:
        import torch.multiprocessing as mp

        mp.spawn(_local_worker, args=(n, _free_port(), plan, cfg), nprocs=n, join=True)
    return read_metrics(plan.run_dir)


def run_training(plan: RunPlan, cfg: TrainConfig, backend: str = "ray") -> list[dict]:
    """Run ``plan`` with ``backend`` (``ray`` or ``local``); returns the metrics history."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    resolve(plan.run_dir).makedirs()
    if backend == "ray":
        return run_with_ray(plan, cfg)
    return run_locally(plan, cfg)


__all__ = ["BACKENDS", "RunExistsError", "RunPlan", "default_run_name", "prepare_run",
           "run_training"]
