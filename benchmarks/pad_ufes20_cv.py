"""The real-photo evaluation of docs/results.md as one command: PAD-UFES-20, k folds grouped by patient,
M, C and CM from scratch and (with ``--clinical-encoder``) C and CM with a pretrained clinical encoder.

Each row is a ``remixformer cv`` run under ``--out-dir`` (``<out-dir>/<row>``); a row or fold already
done is read back, a fold that was stopped resumes from its training state, so the command can be run
again after a kill. Prints a table (test folds, mean ± std) and writes JSON (``--json``).

    python benchmarks/pad_ufes20_cv.py data.root=../shared/data/pad-ufes-20-sample \\
        --clinical-encoder runs/isic2018_small_cpu_clinical/clinical_encoder.safetensors
    python benchmarks/pad_ufes20_cv.py --rows CM CM_pretrained data.augment=flips data.root=...

The clinical encoder: DINO (``remixformer pretrain -c configs/pretrain/dino_small_clinical_isic2018.yaml``)
or the supervised start (configs/isic2018/small_cpu_clinical.yaml, then ``remixformer export --format
clinical-encoder``); neither reads a PAD-UFES-20 photo, so no test photo of any fold leaks into it.
About 35 min for the five rows on a 2-core CPU (C and CM about 20 min each with one thread).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import load_average, machine, write_json  # noqa: E402

# row name -> (modalities, with the pretrained clinical encoder)
ROWS = {
    "M": ("M", False),
    "C": ("C", False),
    "CM": ("CM", False),
    "C_pretrained": ("C", True),
    "CM_pretrained": ("CM", True),
}
METRICS = ("balanced_accuracy", "auc_macro", "accuracy", "f1_macro")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "pad_ufes20" / "small_cpu.yaml"))
    p.add_argument(
        "--rows",
        nargs="+",
        choices=list(ROWS),
        help="default: all (the *_pretrained rows only with --clinical-encoder)",
    )
    p.add_argument("--clinical-encoder", help="clinical-encoder weights for the *_pretrained rows")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--out-dir", default="runs/padcv", help="where the rows' cv runs are written")
    p.add_argument("--prefix", default="pad", help="run names: <prefix>_<row>")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "pad_ufes20_cv.json"))
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.root=...")
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = [r for r, (_, pre) in ROWS.items() if args.clinical_encoder or not pre]
    needs = [r for r in args.rows if ROWS[r][1]]
    if needs and not args.clinical_encoder:
        p.error(f"rows {needs} need --clinical-encoder")
    if args.clinical_encoder and not Path(args.clinical_encoder).is_file():
        p.error(f"--clinical-encoder: no such file {args.clinical_encoder!r}")
    return args


def row_overrides(args: argparse.Namespace, row: str) -> list[str]:
    modalities, pretrained = ROWS[row]
    extra = [f"model.clinical.pretrained={args.clinical_encoder}"] if pretrained else []
    name = f"{args.prefix}_{row}"
    return [
        *args.overrides,
        f"model.modalities={modalities}",
        *extra,
        f"name={name}",
        f"output_dir={args.out_dir}",
        f"data.n_folds={args.folds}",
    ]


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Mean ± std (the sample std, as ``remixformer cv``'s table) over the test folds, the mean best
    validation score and the summed training time of a ``cross_validate`` result."""
    from remixformer.evaluation.stats import mean_std

    folds = result["folds"]
    out: dict[str, Any] = {"folds": len(folds)}
    for m in METRICS:
        values = [float(f["metrics"][m]) for f in folds]
        mean, std, _ = mean_std(values)
        out[m] = {"mean": mean, "std": std, "per_fold": values}
    out["val_best_mean"] = float(np.mean([f["best_score"] for f in folds]))
    out["train_time_s"] = round(sum(float(f["train_time_s"] or 0.0) for f in folds), 1)
    return out


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = "| row | BACC | AUC | accuracy | F1 | mean val BACC | training time, all folds |"
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        cells = [f"{100 * r[m]['mean']:.1f} ± {100 * r[m]['std']:.1f}" for m in METRICS]
        minutes = r["train_time_s"] / 60
        lines.append(f"| {name} | {' | '.join(cells)} | {r['val_best_mean']:.3f} | {minutes:.0f} min |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from remixformer.config import resolve
    from remixformer.training.config import RunConfig
    from remixformer.training.cv import cross_validate

    args = parse_args(argv)
    rows: dict[str, dict[str, Any]] = {}
    start = time.time()
    for row in args.rows:
        cfg = resolve(RunConfig, [args.config], row_overrides(args, row))
        print(f"{row}: {cfg.model.modalities}, {cfg.data.n_folds} folds -> {Path(cfg.output_dir) / cfg.name}")
        rows[row] = summarize(cross_validate(cfg))
    text = table(rows)
    print(text)
    record = {
        "command": "python benchmarks/pad_ufes20_cv.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": args.config,
        "clinical_encoder": args.clinical_encoder,
        "rows": rows,
        "wall_time_s": round(time.time() - start, 1),
        "machine": machine(load_average=load_average()),
    }
    write_json(args.json, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
