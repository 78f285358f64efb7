"""``remixformer cv``: k-fold cross-validation, grouped by patient or lesion, resumable per fold."""

from __future__ import annotations

import argparse

from remixformer.cli.common import add_config_args, load_run_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cv", help="k-fold cross-validation with a mean ± std table", description=__doc__)
    add_config_args(p)
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--run-dir", help="directory of the cross-validation (default: <output_dir>/<name>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from remixformer.engine.distributed import is_rank_zero
    from remixformer.training.cv import cross_validate

    out = cross_validate(load_run_config(args), args.folds, args.run_dir)
    if is_rank_zero():
        print(out.get("table", ""))
    return 0
