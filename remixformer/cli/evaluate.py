"""``remixformer evaluate``: a checkpoint on a split of its data set, or on a manifest, optionally with a
modality withheld; writes report.md/.json, predictions.csv and figures. With ``--backend onnxruntime``
the checkpoint is an exported .onnx file (e.g. an int8 one: how much accuracy the quantisation costs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from remixformer.cli.common import add_device_arg, add_model_file_args, device_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint and write a report", description=__doc__)
    add_model_file_args(p)
    p.add_argument(
        "--split",
        default="test",
        choices=["test", "val", "train", "all"],
        help="split of the checkpoint's data set (default test; 'all' = every case)",
    )
    p.add_argument("--dataset", help="evaluate on another data set by name (default: the checkpoint's)")
    p.add_argument("--root", help="data set folder (default: the one the checkpoint was trained on)")
    p.add_argument(
        "--manifest",
        help="a manifest CSV of new cases (with --schema); implies --split all "
        "unless the manifest has a split column",
    )
    p.add_argument("--schema", help="schema file of the manifest (default: beside the manifest)")
    p.add_argument("--withhold", default="", help="modalities to withhold, e.g. C or CM (robustness)")
    p.add_argument("--out", help="output folder (default: beside the checkpoint, eval_<split>)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--tta", action="store_true", help="average with horizontally flipped images")
    add_device_arg(p)
    p.add_argument(
        "--thresholds",
        help="a decision rule (a run's thresholds.json) whose effect on the macro F1 at 0.5 the report shows",
    )
    p.add_argument(
        "--skip-bad-cases", action="store_true", help="leave out cases whose images are unreadable"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from remixformer.evaluation.evaluate import checkpoint_cases, data_notes, evaluate_cases
    from remixformer.evaluation.thresholds import DecisionRule
    from remixformer.models.checkpoint import load_model

    device = device_from_args(args)
    if args.backend == "onnxruntime":
        from remixformer.serving.onnx_export import OnnxModel

        model = OnnxModel(args.checkpoint).to(device)
    else:
        model = load_model(args.checkpoint)
    rule = DecisionRule.load(args.thresholds) if args.thresholds else None
    table, indices, split, data_cfg = checkpoint_cases(
        model,
        split=args.split,
        dataset=args.dataset,
        root=args.root,
        manifest=args.manifest,
        schema=args.schema,
        skip_bad_cases=args.skip_bad_cases,
        where=args.checkpoint,
    )
    out = Path(
        args.out
        or Path(args.checkpoint).parent.parent
        / "eval"
        / (f"{Path(args.checkpoint).stem}_{split}" + (f"_without_{args.withhold}" if args.withhold else ""))
    )
    metrics = evaluate_cases(
        model,
        table,
        indices,
        out,
        title=f"{Path(args.checkpoint).name} on {table.name} {split}",
        notes=data_notes(table, data_cfg, split, model.modalities),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        withhold=args.withhold,
        tta_flip=args.tta,
        max_image_pixels=data_cfg.max_image_pixels,
        decision_rule=rule,
        device=device,
    )
    s = metrics["summary"]
    print(f"report: {out / 'report.md'}")
    for k in (
        "accuracy",
        "balanced_accuracy",
        "auc_macro",
        "threshold_f1_macro",
        "threshold_f1_macro_fitted",
        "ap_macro",
        "f1_macro",
        "ece",
    ):
        if s.get(k) is not None:
            print(f"  {k:26s} {s[k]:.4f}")
    return 0
