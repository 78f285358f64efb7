"""``remixformer data check``: validate a data set in its official layout (or a manifest) and describe it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from remixformer.data.config import DATASET_NAMES as DATASETS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="data set tools (check)", description="Data set tools.")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    check = sub.add_parser(
        "check",
        help="validate a data set and print its counts, missing files, blanks and leakage warnings",
        description=(
            "Validate a data set as it unpacks (or a manifest + schema) and print counts per split and class "
            "for every task, missing or unreadable image files, metadata fields with blanks and leakage "
            "warnings. Exit status: 0 all good, 1 problems found (bad files, groups across splits), "
            "2 wrong layout (the message names the file, row and column)."
        ),
    )
    check.add_argument(
        "--dataset", choices=DATASETS, help="data set name (default: manifest with --manifest)"
    )
    check.add_argument("--root", help="folder of the data set as it unpacks")
    check.add_argument("--manifest", help="manifest CSV (implies --dataset manifest)")
    check.add_argument("--schema", help="schema JSON/YAML of the manifest (default: schema.json beside it)")
    check.add_argument("--protocol", choices=("auto", "official", "kfold"), default="auto")
    check.add_argument("--n-folds", type=int, default=5)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument(
        "--include-leaky",
        nargs="*",
        default=[],
        metavar="FIELD",
        help="leaky metadata fields to include as inputs (reported as such)",
    )
    check.add_argument(
        "--no-monet", action="store_true", help="MILK10k: leave the MONET concept scores out of the metadata"
    )
    check.add_argument("--quick", action="store_true", help="only check that image files exist (no decoding)")
    check.add_argument("--max-image-pixels", type=int, default=None, help="decompression-bomb limit")
    check.add_argument("--max-list", type=int, default=20, help="how many bad files to list")
    check.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    check.set_defaults(func=run_check)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _config(args: argparse.Namespace):
    from remixformer.config import from_dict
    from remixformer.data.config import DataConfig

    dataset = args.dataset or ("manifest" if args.manifest else None)
    if dataset is None:
        raise ValueError("data check: give --dataset NAME --root DIR, or --manifest FILE [--schema FILE]")
    if dataset != "manifest" and not args.root:
        raise ValueError(f"data check: --root is required for --dataset {dataset}")
    d = {
        "dataset": dataset,
        "protocol": args.protocol,
        "n_folds": args.n_folds,
        "seed": args.seed,
        "include_leaky_fields": list(args.include_leaky),
    }
    if args.no_monet:
        d["monet"] = False
    if args.root:
        d["root"] = args.root
    elif args.manifest:
        d["root"] = str(Path(args.manifest).parent)
    if args.manifest:
        d["manifest"] = args.manifest
    if args.schema:
        d["schema"] = args.schema
    if args.max_image_pixels:
        d["max_image_pixels"] = args.max_image_pixels
    return from_dict(DataConfig, d)


def run_check(args: argparse.Namespace) -> int:
    from remixformer.data.check import check_dataset

    cfg = _config(args)
    state = {"last": -1}

    def progress(done: int, total: int) -> None:
        pct = 100 * done // max(1, total)
        if total >= 2000 and pct % 10 == 0 and pct != state["last"]:
            state["last"] = pct
            print(f"checking images: {pct}% of {total}", file=sys.stderr)

    report = check_dataset(cfg, verify_images=not args.quick, progress=progress)
    print(report.format(max_list=args.max_list))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.ok else 1
