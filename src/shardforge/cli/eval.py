"""``shardforge eval``: top-1/top-5 of a training checkpoint on a dataset split.

Wiring (in cli.py)::

    from shardforge.cli.eval import add_eval_parser, run_eval_command
    add_eval_parser(sub)                      # sub = parser.add_subparsers(...)
    ...
    if args.command == "eval":
        return run_eval_command(args)

Reads the split's ``.beton`` with the FFCV validation pipeline (centre crop
``crop_ratio`` of the short side, resized to ``--res``) and reports accuracy with and
without horizontal-flip test-time augmentation. Exit codes: 0 done, 2 bad arguments
(missing checkpoint or dataset, class mismatch).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

EXIT_USAGE = 2


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``eval`` sub-command to ``subparsers``; returns its parser.

    The parser's defaults include ``handler=run_eval_command``.
    """
    p = subparsers.add_parser("eval", help="evaluate a training checkpoint on a dataset split")
    p.add_argument("checkpoint", nargs="?",
                   help="state.pt, checkpoint_epochNNNN directory or run directory "
                        "(newest checkpoint); local path or URL. `shardforge eval shape-bias "
                        "--checkpoint C --stimuli DIR`: shape bias on cue-conflict stimuli")
    p.add_argument("--data", help="dataset (ingest --out directory or URL); required")
    p.add_argument("--checkpoint", dest="checkpoint_flag", help="shape-bias: the checkpoint")
    p.add_argument("--stimuli", help="shape-bias: directory of SHAPE<i>-TEXTURE<j>.png stimuli")
    p.add_argument("--preprocess", choices=("stimuli", "checkpoint-val"), default="stimuli",
                   help="shape-bias: stimuli (default; model-vs-human: fed unchanged at their "
                        "224 px) or checkpoint-val (centre crop + resize to the checkpoint's "
                        "validation resolution: for models trained at another size)")
    p.add_argument("--split", default="val", help="split to evaluate (default val)")
    p.add_argument("--res", type=int, help="evaluation resolution (default: the checkpoint "
                                           "config's validation.res)")
    p.add_argument("--crop-ratio", type=float, help="centre-crop ratio (default: the config's, "
                                                    "224/256)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=4, help="FFCV decoding threads")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda[:N]")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run_eval_command)
    return p


def evaluate_checkpoint(checkpoint: str, data: str, split: str = "val", res: int | None = None,
                        crop_ratio: float | None = None, batch_size: int = 256,
                        workers: int = 4, device: str = "auto") -> dict:
    """Evaluate ``checkpoint`` on ``split`` of dataset ``data``; returns the result dict.

    Keys: ``top1``, ``top5`` (no TTA), ``top1_tta``, ``top5_tta`` (flip-averaged logits),
    ``loss`` (cross-entropy of the TTA logits), ``samples``, ``res``, ``crop_ratio``,
    ``epochs_done``, ``arch``, ``checkpoint``, ``dataset``, ``split``, ``seconds``.
    Raises FileNotFoundError / ValueError naming the missing or mismatched input.
    """
    import torch

    from shardforge.catalog.lookup import resolve_dataset
    from shardforge.layout.info import load_dataset_info
    from shardforge.models.checkpoint import find_state_file, load_state, model_from_state
    from shardforge.storage import resolve
    from shardforge.stream.ffcv_loader import make_ffcv_loader
    from shardforge.train.evaluate import evaluate_counts, summarize

    started = time.perf_counter()
    state = load_state(checkpoint)
    info = load_dataset_info(resolve_dataset(data))
    info.require_split(split)
    if list(state.get("classes", [])) != list(info.classes):
        raise ValueError(f"the checkpoint's classes ({len(state.get('classes', []))}) differ from "
                         f"dataset {info.name!r}'s ({len(info.classes)}); evaluate on the dataset "
                         "it was trained on")
    val_cfg = state.get("config", {}).get("validation", {})
    res = res or int(val_cfg.get("res", 224))
    crop_ratio = crop_ratio or float(val_cfg.get("crop_ratio", 224 / 256))
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    beton = resolve(info.betons[split])
    if not beton.is_local:
        raise ValueError(f"the .beton of split {split!r} is at {beton.url}; FFCV needs a local "
                         "file: copy the dataset (or mount it) and pass that path as --data")
    model = model_from_state(state).to(dev)
    batches = make_ffcv_loader(beton.path, batch_size, workers, train=False, res=res,
                               crop_ratio=crop_ratio, device=dev)
    amp = torch.bfloat16 if dev.type == "cuda" else None
    r = summarize(evaluate_counts(model, batches, dev, amp))
    return {"top1": r["top1_no_tta"], "top5": r["top5_no_tta"], "top1_tta": r["top1_tta"],
            "top5_tta": r["top5_tta"], "loss": r["val_loss"], "samples": r["val_samples"],
            "res": res, "crop_ratio": crop_ratio, "epochs_done": state.get("epochs_done"),
            "arch": state["model_spec"]["arch"], "checkpoint": find_state_file(checkpoint),
            "dataset": info.url, "split": split,
            "seconds": round(time.perf_counter() - started, 3)}


def format_result(r: dict) -> str:
    """Human-readable lines for :func:`evaluate_checkpoint`'s result."""
    return (f"{r['arch']} after {r['epochs_done']} epochs on {r['dataset']} [{r['split']}], "
            f"{r['samples']} samples at {r['res']} px (crop {r['crop_ratio']:.3f})\n"
            f"  top-1 {r['top1']:.4f}  top-5 {r['top5']:.4f}  (no TTA)\n"
            f"  top-1 {r['top1_tta']:.4f}  top-5 {r['top5_tta']:.4f}  (flip TTA)\n"
            f"  {r['seconds']:.1f} s; checkpoint {r['checkpoint']}")


def run_eval_command(args: argparse.Namespace) -> int:
    """Handle ``shardforge eval``: print the result (``--json``: as JSON); return the exit code."""
    if args.checkpoint == "shape-bias":
        from shardforge.variants.stylize.shape_bias import run_shape_bias_command

        return run_shape_bias_command(args)
    if not args.checkpoint or not args.data:
        print("shardforge eval: error: CHECKPOINT and --data are required (see --help)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        result = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.res,
                                     args.crop_ratio, args.batch_size, args.workers, args.device)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"shardforge eval: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result, indent=2, sort_keys=True) if args.json else format_result(result))
    return 0
