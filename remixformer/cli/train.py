"""``remixformer train``: one training run (CPU, a GPU, or several with DDP / torchrun / SLURM)."""

from __future__ import annotations

import argparse
import json

from remixformer.cli.common import add_config_args, load_run_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model (a run directory with checkpoints, logs and a report)",
        description=__doc__,
    )
    add_config_args(p)
    p.add_argument("--run-dir", help="run directory (default: <output_dir>/<name>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the run directory from its last training state",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from remixformer.engine.distributed import is_rank_zero
    from remixformer.training.run import train

    cfg = load_run_config(args)
    summary = train(cfg, args.run_dir, resume=args.resume)
    if is_rank_zero() and "eval" in summary:
        ev = summary["eval"]
        keys = (
            "accuracy",
            "balanced_accuracy",
            "auc_macro",
            "f1_macro",
            "threshold_f1_macro",
            "threshold_f1_macro_fitted",
        )
        print(f"run directory: {summary['run_dir']}")
        # summary.json counts epochs from 0 like metrics.csv; the progress lines count from 1
        print(
            f"best: epoch {summary['best_epoch'] + 1}/{cfg.train.max_epochs} "
            f"({summary['monitor']} = {summary['best_score']:.4f})"
        )
        print(f"{cfg.eval.split}: " + ", ".join(f"{k} {ev[k]:.4f}" for k in keys if ev.get(k) is not None))
        if getattr(args, "verbose", 0):
            print(json.dumps(summary, indent=2, default=str))
    return 0
