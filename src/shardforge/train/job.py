"""The training job behind ``jobs/train.py`` (argument parsing and the run).

Train an image classifier on a shardforge dataset with Ray Train.

    python jobs/train.py --config jobs/configs/rn50_16ep.yaml --data OUT_DIR_OR_NAME
    ray job submit --working-dir . -- python jobs/train.py --config ... --data s3://...

The run lives in ``STORAGE/NAME`` (``--storage`` or ``run.storage_path``, default
``$SHARDFORGE_RUNS``, else ``$SHARDFORGE_HOME/runs``; ``--name``): checkpoints every epoch
and ``metrics.jsonl``. Under ``ray job submit`` a relative storage path is refused (exit
2). ``--resume`` continues a run from its newest checkpoint. ``--backend local`` runs the
same loop as local processes without Ray (debugging; machines without the ray[train]
extra). Exit codes: 0 done, 1 training failed, 2 bad arguments. See docs/training.md.
"""

from __future__ import annotations

import argparse
import sys

from shardforge.engine import RAY_ADDRESS_HELP

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The jobs/train.py argument parser."""
    p = argparse.ArgumentParser(prog="jobs/train.py", description="Train an image classifier on a shardforge dataset with Ray Train.")
    p.add_argument("--config", required=True, help="recipe YAML (jobs/configs/*.yaml)")
    p.add_argument("--data", required=True,
                   help="dataset: a catalog name NAME[@vN] or an ingest --out directory/URL")
    p.add_argument("--name", help="run name (default: run.name, else CONFIG-DATASET)")
    p.add_argument("--storage", help="run storage path/URL (default: run.storage_path, else "
                                     "$SHARDFORGE_RUNS, else $SHARDFORGE_HOME/runs); all "
                                     "nodes must see it; absolute or a URL under "
                                     "`ray job submit`")
    p.add_argument("--resume", action="store_true",
                   help="continue the run from its newest checkpoint")
    p.add_argument("--backend", choices=("ray", "local"), default="ray",
                   help="ray: Ray Train TorchTrainer (default); local: processes on this machine")
    p.add_argument("--ray-address", help=RAY_ADDRESS_HELP)
    p.add_argument("--num-workers", type=int, help="override scaling.num_workers")
    p.add_argument("--cpu", action="store_true", help="scaling.use_gpu=false")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SEC.KEY=VAL",
                   help="override a config value (YAML), e.g. --set training.epochs=4")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, prepare the run, train; return the exit code."""
    from shardforge.layout.info import DatasetInfo
    from shardforge.layout.reader import ShardReadError
    from shardforge.logs import show_progress
    from shardforge.train.config import load_config
    from shardforge.train.data import preflight
    from shardforge.train.runner import RunExistsError, prepare_run, run_training

    show_progress()
    args = build_parser().parse_args(argv)
    overrides = list(args.overrides)
    if args.num_workers is not None:
        overrides.append(f"scaling.num_workers={args.num_workers}")
    if args.cpu:
        overrides.append("scaling.use_gpu=false")
    try:
        cfg = load_config(args.config, overrides)
        plan = prepare_run(cfg, args.data, args.config, args.name, args.storage, args.resume)
    except (ValueError, FileNotFoundError, RunExistsError) as exc:
        print(f"jobs/train.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        preflight(cfg, DatasetInfo.from_dict(plan.payload["dataset"]))
    except ShardReadError as exc:     # a missing or truncated shard: one line, exit 1
        print(f"jobs/train.py: error: {exc}", file=sys.stderr)
        return 1
    loader = plan.payload["config"]["data"]["loader"]      # as adjusted to the dataset
    if plan.payload["dataset"].get("reinforce"):
        loader += " (replaying stored augmentations)"
    print(f"run {plan.run_dir}: {cfg.model.arch} on {plan.payload['dataset']['url']}, "
          f"{cfg.training.epochs} epochs, {cfg.scaling.num_workers} worker(s), "
          f"{'GPU' if cfg.scaling.use_gpu else 'CPU'}, loader {loader}, backend "
          f"{args.backend}" + (f", resuming from {plan.resume_from}" if plan.resume_from else ""),
          flush=True)
    if args.backend == "ray":
        from shardforge.engine.cluster import ray_session

        # state_api: Ray Train's PlacementGroupCleaner queries Ray's state API (the
        # dashboard); a private Ray without it printed a traceback (docs/cluster.md)
        with ray_session(args.ray_address, state_api=True):
            history = run_training(plan, cfg, "ray")
    else:
        history = run_training(plan, cfg, "local")
    if not history:
        print("jobs/train.py: training produced no metrics", file=sys.stderr)
        return 1
    last = history[-1]
    print(f"done: epoch {last['epoch']}/{last['epochs']} top1 {last['top1']:.4f} "
          f"top5 {last['top5']:.4f}; run {plan.run_dir}")
    return 0
