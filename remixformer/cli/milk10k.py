"""``remixformer milk10k submit|check``: the MILK10k challenge's submission file (docs/milk10k.md)."""

from __future__ import annotations

import argparse
import json
import sys

ID_COLUMNS = ("lesion_id", "lesion")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "milk10k",
        help="MILK10k challenge: write a benchmark submission, check a submission file",
        description="The MILK10k (ISIC 2025) submission file: write one from a checkpoint, or check one.",
    )
    sub = parser.add_subparsers(dest="milk10k_command", metavar="SUBCOMMAND")
    submit = sub.add_parser(
        "submit",
        help="predict the 479 benchmark lesions and write the challenge CSV",
        description=(
            "Predict the benchmark lesions of MILK10k_Test_Metadata.csv (and MILK10k_Test_Input/ for image "
            "models) with a checkpoint trained on milk10k, apply the run's decision rule (thresholds.json, "
            "fitted on validation predictions), write the CSV and check it. Exit status: 0 written and "
            "valid, 1 written but invalid, 2 wrong input (the message says what)."
        ),
    )
    submit.add_argument("--checkpoint", required=True, help="a model file (best.safetensors)")
    submit.add_argument("--out", required=True, help="the submission CSV to write")
    submit.add_argument("--root", help="the MILK10k folder (default: the one the checkpoint was trained on)")
    rule = submit.add_mutually_exclusive_group()
    rule.add_argument(
        "--thresholds", help="a decision rule file (default: the run's thresholds.json when it has one)"
    )
    rule.add_argument(
        "--no-rule", action="store_true", help="write the probabilities as the model gives them"
    )
    submit.add_argument(
        "--id-column", choices=ID_COLUMNS, default="lesion_id", help="header of the id column"
    )
    submit.add_argument("--batch-size", type=int, default=64)
    submit.add_argument("--num-workers", type=int, default=0)
    submit.set_defaults(func=run_submit)

    check = sub.add_parser(
        "check",
        help="validate a submission file against MILK10k_Test_Metadata.csv",
        description=(
            "Check a submission: the header (the id column, then the 11 classes in the official order), one "
            "row per benchmark lesion (none missing, none extra, none twice), every value a number in "
            "[0, 1]. Every problem names the file, the line and the column. Exit status: 0 valid, 1 not."
        ),
    )
    check.add_argument("file", metavar="FILE", help="the submission CSV")
    check.add_argument(
        "--metadata",
        help="MILK10k_Test_Metadata.csv (or a folder holding it, e.g. the MILK10k download); default: "
        "searched under --root",
    )
    check.add_argument("--root", default=".", help="folder to search for MILK10k_Test_Metadata.csv")
    check.add_argument("--id-column", choices=ID_COLUMNS, default="lesion_id", help="expected id header")
    check.add_argument("--json", metavar="OUT", help="also write the result as JSON")
    check.set_defaults(func=run_check)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _metadata_file(args: argparse.Namespace):
    from pathlib import Path

    from remixformer.data.datasets.common import find_one
    from remixformer.data.datasets.milk10k import BENCHMARK, TEST_METADATA

    given = Path(args.metadata or args.root)
    if given.is_file():
        return given
    if not given.is_dir():
        raise ValueError(f"milk10k check: {given} is neither MILK10k_Test_Metadata.csv nor a folder")
    return find_one(given, TEST_METADATA, BENCHMARK, "benchmark metadata")


def run_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from remixformer.evaluation.milk10k import check_submission

    report = check_submission(args.file, _metadata_file(args), args.id_column)
    print(report.format())
    if args.json:
        payload = {"file": report.path, "ok": report.ok, "rows": report.n_rows, "errors": report.errors}
        Path(args.json).write_text(json.dumps(payload | {"positives": report.positives}, indent=2) + "\n")
    return 0 if report.ok else 1


def run_submit(args: argparse.Namespace) -> int:
    from remixformer.evaluation.milk10k import make_submission

    thresholds = None if args.no_rule else (args.thresholds or "auto")
    report, info = make_submission(
        args.checkpoint,
        args.out,
        root=args.root,
        thresholds=thresholds,
        id_column=args.id_column,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        progress=sys.stderr.isatty(),
    )
    rule = info["decision_rule"] or "none (probabilities as the model gives them)"
    print(
        f"wrote {info['submission']}: {info['lesions']} benchmark lesions, model {info['modalities']}, "
        f"decision rule {rule}"
    )
    print(report.format())
    return 0 if report.ok else 1
