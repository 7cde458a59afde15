"""Where a training worker runs: inside Ray Train, or in a local torch.distributed group.

The training loop talks to a :class:`Session` only: rank and world size, its device, the
checkpoint to resume from, reporting an epoch (metrics + checkpoint), dataset shards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import torch

from shardforge.models.checkpoint import STATE_FILE, latest_checkpoint, load_state
from shardforge.storage import resolve


class Session:
    """The interface the loop uses; see :class:`RaySession` and :class:`LocalSession`."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    run_dir: str = ""

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def resume_state(self) -> dict | None:
        """The newest checkpoint's state dict to resume from, or None to start fresh."""
        url = latest_checkpoint(self.run_dir)
        return load_state(url) if url else None

    def report(self, metrics: dict, checkpoint_dir: str | None, name: str) -> None:
        """Report an epoch: every rank calls it; rank 0 passes the checkpoint directory."""
        raise NotImplementedError

    def say(self, line: str) -> None:
        """Show one progress line (an epoch's metrics) on the run's console, once."""
        print(line, flush=True)

    def dataset_shard(self, name: str):
        """This worker's Ray Data iterator for dataset ``name`` (Ray sessions only)."""
        raise ValueError("data.loader=ray_data needs the Ray Train backend (jobs/train.py "
                         "--backend ray); the local backend supports data.loader=ffcv only")


class RaySession(Session):
    """A worker of a Ray Train ``TorchTrainer`` (process group set up by Ray)."""

    def __init__(self, run_dir: str) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.local_rank = ctx.get_local_rank()
        self.run_dir = run_dir
        _quiet_ray_train_reports()

    @property
    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def resume_state(self) -> dict | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:  # e.g. a run started by the local backend: scan the run dir
            return super().resume_state()
        with checkpoint.as_directory() as d:
            return load_state(os.path.join(d, STATE_FILE))

    def report(self, metrics: dict, checkpoint_dir: str | None, name: str) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)

    def say(self, line: str) -> None:
        # Ray Train v2 patches print() in the worker: it logs the line through the root
        # logger's console handler and also tees it to the redirected stdout, so every
        # print showed twice in `ray job submit` output (demo log, ray 2.60). One write.
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def dataset_shard(self, name: str):
        import ray.train

        shard = ray.train.get_dataset_shard(name)
        if shard is None:
            raise ValueError(f"Ray Train gave this worker no {name!r} dataset; pass "
                             f"datasets={{'{name}': ...}} to the TorchTrainer")
        return shard


#: Ray Train v2 loggers that log every ``ray.train.report`` at INFO: the whole metrics dict
#: from every rank, and the checkpoint path. The loop's epoch line (:meth:`Session.say`)
#: says the same once. The first is named by its source file, outside ``ray.train``, so
#: RunConfig's LoggingConfig does not reach it.
_RAY_REPORT_LOGGERS = ("ray.train.v2._internal.execution.context",
                       "ray.train.v2._internal.execution.storage")


def _quiet_ray_train_reports() -> None:
    """Raise :data:`_RAY_REPORT_LOGGERS` to WARNING in this worker (no-op on a Ray
    without Train v2)."""
    import importlib

    for module_name in _RAY_REPORT_LOGGERS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for name in {module_name, getattr(module, "__file__", None) or module_name}:
            logging.getLogger(name).setLevel(logging.WARNING)


class LocalSession(Session):
    """A process of a local run (``torch.multiprocessing`` + gloo/nccl on 127.0.0.1).

    Checkpoints are copied to ``RUN_DIR/checkpoint_epochNNNN/state.pt``; only the newest
    ``num_to_keep`` are kept.
    """

    def __init__(self, run_dir: str, rank: int = 0, world_size: int = 1, use_gpu: bool = False,
                 num_to_keep: int | None = 2) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, rank
        self.run_dir, self.use_gpu, self.num_to_keep = run_dir, use_gpu, num_to_keep

    @property
    def device(self) -> torch.device:
        if self.use_gpu and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return torch.device("cpu")

    def report(self, metrics: dict, checkpoint_dir: str | None, name: str) -> None:
        if checkpoint_dir:
            resolve(self.run_dir).join(name, STATE_FILE).upload_file_atomic(
                os.path.join(checkpoint_dir, STATE_FILE))
            self._prune()
        if torch.distributed.is_initialized():
            torch.distributed.barrier()

    def _prune(self) -> None:
        if not self.num_to_keep:
            return
        root = resolve(self.run_dir)
        names = sorted({p.rsplit("/", 2)[-2] for p in root.list_files()
                        if p.endswith("/" + STATE_FILE) and "/checkpoint_epoch" in p})
        for old in names[:-self.num_to_keep]:
            loc = root.join(old)
            if loc.is_local:
                shutil.rmtree(loc.path, ignore_errors=True)
            else:
                loc.fs.delete_dir(loc.path)


@contextlib.contextmanager
def scratch_dir() -> Iterator[str]:
    """A temporary local directory for writing a checkpoint before it is reported."""
    with tempfile.TemporaryDirectory(prefix="shardforge-ckpt-") as d:
        yield d
