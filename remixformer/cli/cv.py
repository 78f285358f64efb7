"""``remixformer cv``: k-fold cross-validation, grouped by patient or lesion, resumable per fold."""

from __future__ import annotations

import argparse

from remixformer.cli.common import add_config_args, add_device_arg, device_from_args, load_run_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="k-fold cross-validation with a mean ± std table", description=__doc__)
    add_config_args(p)
    p.add_argument(
        "--folds",
        type=int,
        help="number of folds: sets data.n_folds (default: the config's data.n_folds, 5 unless set); "
        "the number used, and where it came from, is printed",
    )
    p.add_argument("--run-dir", help="directory of the cross-validation (default: <output_dir>/<name>)")
    add_device_arg(p, what="each fold's final evaluation runs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from remixformer.engine.distributed import is_rank_zero
    from remixformer.training.cv import cross_validate

    device = device_from_args(args)
    cfg = load_run_config(args)
    source = "data.n_folds of the config"
    if args.folds is not None:
        if args.folds != cfg.data.n_folds and is_rank_zero():
            print(f"note: --folds {args.folds} overrides data.n_folds={cfg.data.n_folds} of the config")
        args.overrides = [*args.overrides, f"data.n_folds={args.folds}"]
        cfg = load_run_config(args)
        source = "--folds"
    if is_rank_zero():
        print(f"cross-validation: {cfg.data.n_folds} folds ({source})")
    out = cross_validate(cfg, run_dir=args.run_dir, eval_device=device)
    if is_rank_zero():
        print(out.get("table", ""))
    return 0
