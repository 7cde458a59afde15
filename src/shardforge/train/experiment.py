"""Train a recipe on a dataset from Python and get its metrics: what the variant
experiments (docs/results/*.md) and the demo pipelines use instead of a jobs/train.py
subprocess. A finished run with the same name is reused, so reruns are cheap."""

from __future__ import annotations

from dataclasses import dataclass

from shardforge.train.config import load_config
from shardforge.train.metrics import read_metrics
from shardforge.train.runner import prepare_run, run_training


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory and the last epoch's metrics."""

    run_dir: str
    final: dict

    @property
    def top1(self) -> float:
        return float(self.final["top1"])


def train_recipe(config: str, data: str, storage: str, name: str, *,
                 overrides: tuple[str, ...] = (), backend: str = "local") -> RunResult:
    """Train ``config`` (a jobs/configs YAML path, ``--set`` style ``overrides``) on
    ``data`` (catalog name or dataset location) as run ``storage/name``.

    When the run already finished all its epochs it is not retrained; an unfinished run is
    resumed from its newest checkpoint. ``backend``: ``local`` (processes, no Ray needed)
    or ``ray`` (Ray Train on the connected/started Ray). Returns the run's final metrics.
    """
    cfg = load_config(config, list(overrides))
    plan = prepare_run(cfg, data, config, name, storage, resume=True)
    done = read_metrics(plan.run_dir)
    if done and done[-1]["epoch"] >= cfg.training.epochs:
        return RunResult(plan.run_dir, done[-1])
    history = run_training(plan, cfg, backend)
    if not history:
        raise RuntimeError(f"run {plan.run_dir} produced no metrics")
    return RunResult(plan.run_dir, history[-1])
