"""``remixformer analyze``: the paper's data-set level analyses, as figures (PNG) and numbers (CSV/JSON).

importance   permutation importance of each metadata field, per class (Fig. 10)
readers      the model's ROC curves with readers' operating points and accuracies (Fig. 11b)
modalities   accuracy by modality subset across folds or seeds (Fig. 11a, Table XIV)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from remixformer.cli.common import add_device_arg, device_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="data-set level analyses: metadata importance, reader study, modality comparison",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sp = p.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)

    imp = sp.add_parser(
        "importance",
        help="permutation importance of the metadata fields (Fig. 10)",
        description="Shuffle one metadata field across the cases, several times, and measure the drop in "
        "accuracy and in each class's recall. Data: the checkpoint's data set (or --dataset/--root, "
        "or --manifest).",
    )
    imp.add_argument("--checkpoint", required=True, help="a model file that uses metadata (M)")
    imp.add_argument("--split", default="test", choices=["test", "val", "train", "all"])
    imp.add_argument("--dataset", help="another data set by name (default: the checkpoint's)")
    imp.add_argument("--root", help="data set folder (default: the one the checkpoint was trained on)")
    imp.add_argument("--manifest", help="a manifest CSV of labelled cases (with --schema)")
    imp.add_argument("--schema", help="schema file of the manifest (default: beside the manifest)")
    imp.add_argument("--repeats", type=int, default=5, help="shuffles per field (default 5)")
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--fields", nargs="+", help="only these metadata fields (default: every field)")
    imp.add_argument(
        "--include-cases-without-metadata",
        action="store_true",
        help="also score cases without any metadata (shuffling cannot change them)",
    )
    imp.add_argument("--no-cache", action="store_true", help="rerun the image branches for every shuffle")
    imp.add_argument("--batch-size", type=int, default=16)
    imp.add_argument("--num-workers", type=int, default=0)
    add_device_arg(imp)
    imp.add_argument("--out", required=True, help="output folder")
    imp.set_defaults(func=run_importance)

    rd = sp.add_parser(
        "readers",
        help="model ROC with readers' operating points and accuracies (Fig. 11b)",
        description="Reader CSV columns: reader_id, group, case_id, answer (a class name), optionally "
        "stage (the modalities shown, e.g. C, CM, CDM; `remixformer readers export` writes it). "
        "Predictions: the predictions.csv written by `remixformer evaluate`. A CSV with stages is "
        "compared stage by stage (one folder per stage and a summary by stage) unless --stage picks one.",
    )
    rd.add_argument("--predictions", required=True, help="predictions.csv of remixformer evaluate")
    rd.add_argument("--readers", required=True, help="reader answers CSV")
    rd.add_argument(
        "--class", dest="cls", help="one class, one-vs-rest (default: every class, one panel each)"
    )
    rd.add_argument(
        "--all-cases",
        action="store_true",
        help="model ROC on every case, not only those the readers answered",
    )
    rd.add_argument("--stage", help="only the answers of this stage (a value of the CSV's stage column)")
    rd.add_argument("--out", required=True, help="output folder")
    rd.set_defaults(func=run_readers)

    md = sp.add_parser(
        "modalities",
        help="accuracy by modality subset across folds or seeds (Fig. 11a, Table XIV)",
        description="Inputs: cv run folders or cv_results.json (one value per fold), evaluate report "
        "folders or report.json (one value each). Inputs with the same label are pooled (seeds).",
    )
    md.add_argument("inputs", nargs="+", metavar="RUN_OR_REPORT")
    md.add_argument(
        "--labels", nargs="+", help="one label per input, e.g. C CD CDM (default: read from each input)"
    )
    md.add_argument("--metric", default="accuracy", help="a flat metric name (default accuracy)")
    md.add_argument("--reference", help="label to test the others against (paired t-test; same counts)")
    md.add_argument("--out", required=True, help="output folder")
    md.set_defaults(func=run_modalities)


def _load_cases(args: argparse.Namespace, model):
    """The data set and case indices, resolved as ``remixformer evaluate`` does."""
    from remixformer.evaluation.evaluate import checkpoint_cases

    table, indices, split, data_cfg = checkpoint_cases(
        model,
        split=args.split,
        dataset=args.dataset,
        root=args.root,
        manifest=args.manifest,
        schema=args.schema,
        where=args.checkpoint,
    )
    return table, indices, split, data_cfg


def run_importance(args: argparse.Namespace) -> int:
    from remixformer.evaluation.plots import save_figure
    from remixformer.explain.figures import plot_importance
    from remixformer.explain.importance import importance_on_cases
    from remixformer.models.checkpoint import load_model

    model = load_model(args.checkpoint)
    if "M" not in model.modalities:
        raise ValueError(
            f"{args.checkpoint}: the model does not use metadata (modalities {model.modalities})"
        )
    table, indices, split, data_cfg = _load_cases(args, model)
    device = device_from_args(args)
    result = importance_on_cases(
        model,
        table,
        indices,
        repeats=args.repeats,
        seed=args.seed,
        fields=args.fields,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        only_with_metadata=not args.include_cases_without_metadata,
        max_image_pixels=data_cfg.max_image_pixels,
        cache_branches=not args.no_cache,
    )
    result.notes.insert(0, f"data set {table.name}, split {split}, checkpoint {Path(args.checkpoint).name}")
    out = Path(args.out)
    fig = plot_importance(
        result,
        title=f"Permutation importance of the metadata: {table.name} {split} "
        f"({result.n_cases} cases, {result.repeats} repeats)",
    )
    save_figure(fig, out / "importance.png")
    result.write_csv(out / "importance.csv")
    result.write_json(out / "importance.json")
    print(f"baseline accuracy {result.baseline[0]:.4f} on {result.n_cases} cases; mean accuracy drop:")
    mean, std = result.mean(), result.std()
    for name in result.ranking():
        i = result.fields.index(name)
        spread = "" if std[i, 0] != std[i, 0] else f" ± {std[i, 0]:.4f}"
        print(f"  {name:24s} {mean[i, 0]:+.4f}{spread}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"wrote importance.png, importance.csv, importance.json to {out}")
    return 0


def run_readers(args: argparse.Namespace) -> int:
    from remixformer.evaluation.predictions import Predictions
    from remixformer.explain.readers import compare_readers, read_reader_csv

    preds = Predictions.read_csv(args.predictions).aggregate_by_case()
    study = read_reader_csv(args.readers, preds.diagnosis.classes, preds.case_ids)
    if args.stage is not None:
        if not study.stages:
            raise ValueError(f"--stage {args.stage!r}: {args.readers} has no stage column")
        study = study.for_stage(args.stage)
    elif len(study.stages) > 1:
        return _run_reader_stages(args, preds, study)
    cmp = compare_readers(preds, study, cls=args.cls, all_cases=args.all_cases)
    written = cmp.save(args.out)
    stage = f" at stage {study.stages[0]}" if study.stages else ""
    print(f"{len(study.readers)} readers in {len(study.groups)} group(s), {len(cmp.case_ids)} cases{stage}")
    print(f"  {'model':24s} accuracy {100 * cmp.model['accuracy']:.1f}%")
    for g in cmp.group_accuracy:
        print(
            f"  {g['group']:24s} accuracy {100 * g['mean_accuracy']:.1f}% (mean of {g['n_readers']} readers; "
            f"model on their cases {100 * g['model_accuracy_same_cases']:.1f}%)"
        )
    for note in cmp.notes:
        print(f"note: {note}")
    print(f"wrote {', '.join(sorted(written))} to {args.out}")
    return 0


def _run_reader_stages(args: argparse.Namespace, preds, study) -> int:
    from remixformer.explain.readers import compare_reader_stages

    cmp = compare_reader_stages(preds, study, cls=args.cls, all_cases=args.all_cases)
    written = cmp.save(args.out)
    print(
        f"{len(study.readers)} readers in {len(study.groups)} group(s), {len(study.case_ids)} cases, "
        f"{len(study.stages)} stages"
    )
    print(f"  {'stage':8s} {'group':24s} accuracy")
    for row in cmp.rows():
        if row["group"] == "model":
            print(f"  {row['stage']:8s} {'model':24s} {100 * row['mean_accuracy']:.1f}%")
        else:
            same = 100 * row["model_accuracy_same_cases"]
            print(
                f"  {row['stage']:8s} {row['group']:24s} {100 * row['mean_accuracy']:.1f}% (mean of "
                f"{row['n_readers']} readers; model on their cases {same:.1f}%)"
            )
    for stage, one in cmp.by_stage.items():
        for note in one.notes:
            print(f"note: stage {stage}: {note}")
    top = sorted(n for n in written if "/" not in n)
    print(f"wrote {', '.join(top)} and one folder per stage to {args.out}")
    return 0


def run_modalities(args: argparse.Namespace) -> int:
    from remixformer.explain.modalities import load_modality_results

    cmp = load_modality_results(args.inputs, args.labels, args.metric)
    if args.reference is not None and args.reference not in cmp.values:
        raise ValueError(f"--reference {args.reference!r} is not one of the labels {list(cmp.values)}")
    written = cmp.save(args.out, reference=args.reference)
    print(cmp.table(None), end="")
    for note in cmp.notes:
        print(f"note: {note}")
    print(f"wrote {', '.join(sorted(written))} to {args.out}")
    return 0
