"""Train a recipe on a dataset from Python and get its metrics: what the variant
experiments (docs/results/*.md) and the demo pipelines use instead of a jobs/train.py
subprocess. A finished run with the same name and the same recipe content is reused, so
reruns are cheap; an edited recipe trains a new run."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from typing import TextIO

from shardforge.train.config import TrainConfig, load_config
from shardforge.train.metrics import read_metrics
from shardforge.train.runner import RunPlan, prepare_run, run_training


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory and the last epoch's metrics."""

    run_dir: str
    final: dict

    @property
    def top1(self) -> float:
        return float(self.final["top1"])


def train_recipe(config: str, data: str, storage: str, name: str, *,
                 overrides: tuple[str, ...] = (), backend: str = "local",
                 log: TextIO | None = None) -> RunResult:
    """Train ``config`` (a jobs/configs YAML path, ``--set`` style ``overrides``) on
    ``data`` (catalog name or dataset location) as run ``storage/name``.

    Reuse follows the recipe's content, not only the name: the run's newest checkpoint
    records the effective config and dataset it was trained with (:func:`run_identity`).
    When they equal this call's, a run that finished all its epochs is reused and an
    unfinished one resumed; when they differ (an edited recipe, other overrides, another
    dataset), that run is left as it is and the training goes to ``storage/name-KEY``, KEY
    a hash of the effective config and dataset (reused in turn on the next call with the
    same content). ``log`` (default stderr) says which happened. ``backend``: ``local``
    (processes, no Ray needed) or ``ray`` (Ray Train on the connected/started Ray).
    Returns the run's final metrics.
    """
    log = log if log is not None else sys.stderr
    cfg = load_config(config, list(overrides))
    plan = prepare_run(cfg, data, config, name, storage, resume=True)
    wanted = plan_identity(plan)
    recorded = run_identity(plan.run_dir)
    if recorded is not None and recorded != wanted:
        keyed = f"{name}-{identity_key(wanted)}"
        print(f"run {plan.run_dir} was trained with another recipe (differing: "
              f"{', '.join(differences(recorded, wanted))}): left as it is; using run "
              f"{keyed} for {config}", file=log)
        plan = prepare_run(cfg, data, config, keyed, storage, resume=True)
        recorded = run_identity(plan.run_dir)
        if recorded is not None and recorded != wanted:
            raise RuntimeError(f"run {plan.run_dir} holds a run of another recipe (differing: "
                               f"{', '.join(differences(recorded, wanted))}); move it away")
    done = read_metrics(plan.run_dir)
    if recorded is not None and done and done[-1]["epoch"] >= cfg.training.epochs:
        print(f"run {plan.run_dir}: reusing the finished run of {config} (same recipe "
              "content and dataset)", file=log)
        return RunResult(plan.run_dir, done[-1])
    print(f"run {plan.run_dir}: {'resuming' if plan.resume_from else 'training'} {config} "
          f"on {data}", file=log)
    history = run_training(plan, cfg, backend)
    if not history:
        raise RuntimeError(f"run {plan.run_dir} produced no metrics")
    return RunResult(plan.run_dir, history[-1])



def recipe_run_dir(config: str, data: str, storage: str, name: str) -> str:
    """:func:`train_recipe` with the defaults, returning the run directory: the
    :data:`~shardforge.build.pipeline.TrainRecipe` the CLI hands to builds that train a
    ``recipe:`` teacher."""
    return train_recipe(config, data, storage, name).run_dir

def plan_identity(plan: RunPlan) -> dict:
    """What decides a run's result: its effective config (recipe + overrides, adjusted to
    the dataset, paths absolute; ``run.storage_path`` left out) and the dataset's
    location, in JSON form."""
    return _normalise({"config": plan.payload["config"], "dataset": plan.payload["dataset"]["url"]})


def run_identity(run_dir: str) -> dict | None:
    """:func:`plan_identity` as recorded in the newest checkpoint of ``run_dir``; None when
    the run has no checkpoint. A checkpoint without a readable config gives an identity
    that matches no plan (so that run is never reused for a recipe)."""
    from shardforge.models.checkpoint import latest_checkpoint, load_state

    latest = latest_checkpoint(run_dir)
    if latest is None:
        return None
    state = load_state(latest)
    try:
        config = TrainConfig.from_dict(state["config"]).to_dict()   # new fields: defaults
    except (KeyError, TypeError, ValueError):
        return {"config": None, "dataset": state.get("dataset")}
    return _normalise({"config": config, "dataset": state.get("dataset")})


def identity_key(identity: dict) -> str:
    """12 hex digits of the sha256 of an identity: the run-name suffix of an edited recipe."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


def differences(a: dict, b: dict) -> list[str]:
    """The dotted keys (``training.epochs``, ``dataset``) where two identities differ."""
    out = []
    if a.get("dataset") != b.get("dataset"):
        out.append("dataset")
    ca, cb = a.get("config") or {}, b.get("config") or {}
    for section in sorted(set(ca) | set(cb)):
        sa, sb = ca.get(section) or {}, cb.get(section) or {}
        out += [f"{section}.{k}" for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k)]
    return out or ["config unreadable"]


def _normalise(obj: dict) -> dict:
    """The identity in JSON form, without ``run.storage_path``: where runs are stored is
    not what decides a run's result (the run is looked up there anyway), so a recipe
    whose storage default changed still reuses its runs."""
    out = json.loads(json.dumps(obj, sort_keys=True, default=str))
    run = (out.get("config") or {}).get("run")
    if isinstance(run, dict):
        run.pop("storage_path", None)
    return out
