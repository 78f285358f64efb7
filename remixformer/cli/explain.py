"""``remixformer explain``: one case through a checkpoint, with the figures of the paper's Figs. 7 and 8
(LSM crops and score over the photo; region- and window-level attention over the dermoscopy image)
and their numbers as CSV/JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from remixformer.cli.common import add_device_arg, device_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="explain one case: attention figures and numbers", description=__doc__)
    p.add_argument("--checkpoint", required=True, help="a model file (best.safetensors / last.safetensors)")
    p.add_argument("--clinical", help="clinical photo (any format PIL reads)")
    p.add_argument("--dermoscopy", help="dermoscopy image")
    p.add_argument(
        "--meta",
        nargs="+",
        action="extend",
        default=[],
        metavar="FIELD=VALUE",
        help="metadata values, e.g. --meta age=55 sex=female (checked against the model's schema)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-templates", action="store_true", help="leave out the MSTA template panel")
    p.add_argument(
        "--max-side", type=int, default=1024, help="longer side of an image as displayed (default 1024)"
    )
    p.add_argument("--dpi", type=int, default=150, help="resolution of the PNG figures (default 150)")
    add_device_arg(p)
    p.set_defaults(func=run)


def parse_meta(items: list[str]) -> dict[str, str] | None:
    """``["age=55", "sex=female"]`` -> dict; a value may be empty (unknown)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--meta {item!r}: expected FIELD=VALUE")
        if name.strip() in out:
            raise ValueError(f"--meta: field {name.strip()!r} given twice")
        out[name.strip()] = value.strip()
    return out or None


def synthetic_lesion(photo: str | None) -> tuple[float, float, float] | None:
    """The lesion of a photo of a synthetic set (``<root>/clinical/<id>.png`` beside ``latents.csv``)."""
    if photo is None:
        return None
    path = Path(photo).resolve()
    root = path.parent.parent
    if not (root / "latents.csv").is_file() or not (root / "synthetic.json").is_file():
        return None
    from remixformer.data.datasets.synthetic import read_lesions

    found = read_lesions(root).get(str(path))
    return None if found is None else found[:3]


def run(args: argparse.Namespace) -> int:
    from remixformer.explain import explain_case
    from remixformer.serving.predictor import Predictor

    device = device_from_args(args)
    metadata = parse_meta(args.meta)
    for flag in ("clinical", "dermoscopy"):
        path = getattr(args, flag)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"--{flag} {path}: no such file")
    predictor = Predictor.from_checkpoint(args.checkpoint, device=device)
    exp = explain_case(predictor, clinical=args.clinical, dermoscopy=args.dermoscopy, metadata=metadata)
    exp.lesion = synthetic_lesion(args.clinical)
    written = exp.save(args.out, templates=not args.no_templates, max_side=args.max_side, dpi=args.dpi)
    pred = exp.prediction
    inside = exp.lesion_in_crops()
    if inside is not None:
        print(f"lesion selection: {int(inside.sum())} of {len(inside)} crops contain the lesion's centre")
    ranked = ", ".join(f"{c} {p:.3f}" for c, p in pred.top_k)
    print(f"diagnosis: {pred.diagnosis} (top: {ranked}; modalities used: {pred.modalities_used})")
    for note in exp.notes:
        print(f"note: {note}")
    print(f"wrote {len(written)} files to {args.out}: {', '.join(sorted(written))}")
    return 0
