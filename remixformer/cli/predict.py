"""``remixformer predict``: a trained model on new cases.

One case (a table on screen, ``--json`` for machines):

    remixformer predict --checkpoint best.safetensors --clinical photo.jpg --dermoscopy derm.png \\
        --meta sex=female location=back

Many cases from a manifest CSV (docs/data.md), batched, with a progress bar:

    remixformer predict --checkpoint best.safetensors --manifest new_cases.csv --out preds.csv

With ``--backend onnxruntime`` the checkpoint is an exported .onnx file (``remixformer export``):
the same answers, often faster on a CPU, no overlays.

A manifest row that cannot be scored is reported with its row number and the others are scored; the
exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from remixformer.cli.common import add_device_arg, add_model_file_args, device_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="run a checkpoint on one case or a manifest of cases",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_file_args(p)
    one = p.add_argument_group("one case")
    one.add_argument("--clinical", metavar="IMG", help="clinical photo")
    one.add_argument("--dermoscopy", metavar="IMG", help="dermoscopy image")
    one.add_argument(
        "--meta",
        nargs="+",
        default=[],
        metavar="FIELD=VALUE",
        help="metadata values, e.g. sex=female age=45 location=back (the model schema's fields and values)",
    )
    one.add_argument("--json", action="store_true", help="print JSON instead of a table")
    one.add_argument("--top-k", type=int, default=3, help="ranked diagnoses to show (default 3)")
    one.add_argument("--overlays", metavar="DIR", help="write the attention overlays as PNG files to DIR")
    many = p.add_argument_group("many cases")
    many.add_argument("--manifest", metavar="FILE", help="a manifest CSV of cases (docs/data.md)")
    many.add_argument("--out", metavar="CSV", help="where to write the predictions (with --manifest)")
    many.add_argument("--batch-size", type=int, default=16)
    many.add_argument("--num-workers", type=int, default=0, help="DataLoader workers reading images")
    many.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tta", action="store_true", help="average with horizontally flipped images")
    add_device_arg(p, default="cpu")
    p.set_defaults(func=run)


def parse_meta(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--meta: expected FIELD=VALUE, got {item!r}")
        if name.strip() in out:
            raise ValueError(f"--meta: field {name.strip()!r} given twice")
        out[name.strip()] = value.strip()
    return out


def run(args: argparse.Namespace) -> int:
    one_case = args.clinical or args.dermoscopy or args.meta
    if args.manifest and one_case:
        raise ValueError("give either --manifest (many cases) or --clinical/--dermoscopy/--meta (one case)")
    if args.manifest and not args.out:
        raise ValueError("--manifest needs --out, the CSV file to write the predictions to")
    if not args.manifest and not one_case:
        raise ValueError("nothing to predict: give --clinical, --dermoscopy and/or --meta, or --manifest")
    if args.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {args.top_k}")

    from remixformer.serving.predictor import Predictor

    if args.overlays and args.backend != "eager":
        raise ValueError("--overlays needs the eager backend (the onnxruntime one gives no attention maps)")
    predictor = Predictor.load(
        args.checkpoint, args.backend, device=device_from_args(args), tta_flip=args.tta
    )
    if args.manifest:
        return _many(predictor, args)
    return _one(predictor, args)


def _one(predictor, args: argparse.Namespace) -> int:
    from pathlib import Path

    meta = parse_meta(args.meta)
    explain = bool(args.overlays)
    result = predictor.predict(
        clinical=args.clinical,
        dermoscopy=args.dermoscopy,
        metadata=meta if meta else None,
        top_k=args.top_k,
        explain=explain,
    )
    written = []
    if args.overlays:
        from remixformer.data.images import load_image
        from remixformer.serving.overlays import make_overlays

        images = {
            k: load_image(Path(v), max_pixels=predictor.max_image_pixels)
            for k, v in (("clinical", args.clinical), ("dermoscopy", args.dermoscopy))
            if v
        }
        out_dir = Path(args.overlays)
        out_dir.mkdir(parents=True, exist_ok=True)
        for o in make_overlays(result.explanation, predictor.input_sizes, **images):
            path = out_dir / f"{o.name}.png"
            path.write_bytes(o.png)
            written.append(str(path))
    if args.json:
        body = result.to_dict()
        if "M" in predictor.modalities and meta:
            body["metadata_used"] = predictor.schema.validate(meta)
        body["checkpoint"] = predictor.identity
        if written:
            body["overlays"] = written
        print(json.dumps(body, indent=2))
        return 0
    print(format_table(predictor, result))
    for path in written:
        print(f"overlay: {path}")
    return 0


def format_table(predictor, result) -> str:
    from remixformer.modalities import modality_names

    ident = predictor.identity
    diag = predictor.tasks[0]
    lines = [
        f"checkpoint: {ident.get('file')} ({ident.get('preset')}, sha256 {str(ident.get('sha256'))[:12]})",
        f"inputs used: {', '.join(modality_names(result.modalities_used))}",
        "",
        f"{'rank':>4}  {'class':<12} {'probability':>11}",
    ]
    for i, (cls, p) in enumerate(result.top_k, 1):
        bar = "#" * round(20 * p)
        lines.append(f"{i:>4}  {cls:<12} {100 * p:>10.1f}%  {bar}")
    others = [t for t in predictor.tasks if t.name != diag.name]
    if others:
        lines.append("")
        for t in others:
            probs = result.probabilities[t.name]
            cells = ", ".join(f"{c} {100 * v:.1f}%" for c, v in probs.items())
            lines.append(f"{t.name}: {cells}")
    lines += ["", "Research tool, not a medical device: not a diagnosis."]
    return "\n".join(lines)


def _many(predictor, args: argparse.Namespace) -> int:
    from remixformer.serving.batch import score_manifest

    result = score_manifest(
        predictor,
        args.manifest,
        args.out,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    print(
        f"scored {result.n_scored} of {result.n_rows} case(s) in {result.seconds:.1f} s "
        f"({result.cases_per_second:.2f} cases/s) -> {result.out}"
    )
    if result.errors:
        print(f"{len(result.errors)} row(s) could not be scored:", file=sys.stderr)
        for e in result.errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0
