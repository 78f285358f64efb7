"""Does a model trained on PAD-UFES-20 photos lean on the surgeons' pen marks?

Many PAD-UFES-20 photos show a pen line drawn around the lesion before a biopsy. If a photo model
learned "pen mark => biopsied class (BCC, MEL, SCC)", it would read the mark instead of the lesion. This
script joins a hand-made list of marked photos (``benchmarks/data/pad_ufes20_pen_marks.csv``: 169
photos looked at by eye, 1 = a pen line or dot visible anywhere on the photo) with the out-of-fold test
predictions of ``remixformer cv`` runs and prints, per run:

- the share of marked photos per class (from the list alone);
- accuracy on marked vs unmarked listed photos;
- the mean probability of the biopsied classes (BCC + MEL + SCC) on photos of the other classes
  (ACK, NEV, SEK), marked vs unmarked, with a one-sided Mann-Whitney p-value: the direct test of the
  shortcut, since those lesions are not biopsied whether marked or not.

    python benchmarks/pad_pen_marks.py runs/padcv/pad_C runs/padcv/pad_CM \\
        --metadata ../shared/data/pad-ufes-20-sample/metadata.csv

Writes ``benchmarks/results/pad_pen_marks.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

HERE = Path(__file__).resolve().parent
BIOPSIED = ("BCC", "MEL", "SCC")


def load_marks(path: Path) -> pd.DataFrame:
    marks = pd.read_csv(path)
    missing = {"img_id", "pen_mark", "diagnostic"} - set(marks.columns)
    if missing:
        raise SystemExit(f"{path}: missing columns {sorted(missing)}")
    marks["case_id"] = marks["img_id"].str.replace(r"\.png$", "", regex=True)
    return marks.set_index("case_id")


def out_of_fold_predictions(run_dir: Path) -> pd.DataFrame:
    """The test predictions of every fold of a ``remixformer cv`` run (each case once)."""
    files = sorted(run_dir.glob("fold_*/eval/test/predictions.csv"))
    if not files:
        raise SystemExit(f"{run_dir}: no fold_*/eval/test/predictions.csv (is it a `remixformer cv` run?)")
    preds = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    if preds["case_id"].duplicated().any():
        raise SystemExit(f"{run_dir}: a case is in two test folds")
    return preds.set_index("case_id")


def class_shares(marks: pd.DataFrame) -> dict[str, dict[str, float]]:
    return {
        str(c): {
            "photos": int(len(g)),
            "marked": int(g["pen_mark"].sum()),
            "share": float(g["pen_mark"].mean()),
        }
        for c, g in marks.groupby("diagnostic")
    }


def shortcut_check(preds: pd.DataFrame, marks: pd.DataFrame) -> dict[str, object]:
    prob_cols = [c for c in preds.columns if c.startswith("diag_prob_")]
    classes = [c.removeprefix("diag_prob_") for c in prob_cols]
    joined = marks.join(preds, how="inner")
    predicted = np.array(classes)[joined[prob_cols].to_numpy().argmax(axis=1)]
    correct = predicted == joined["diag_true"].to_numpy()
    marked = joined["pen_mark"].to_numpy() == 1
    biopsied_prob = joined[[f"diag_prob_{c}" for c in BIOPSIED if c in classes]].sum(axis=1).to_numpy()
    other = ~joined["diag_true"].isin(BIOPSIED).to_numpy()
    a, b = biopsied_prob[other & marked], biopsied_prob[other & ~marked]
    p = float(mannwhitneyu(a, b, alternative="greater").pvalue) if len(a) and len(b) else float("nan")
    return {
        "listed_photos_with_prediction": int(len(joined)),
        "accuracy_marked": float(correct[marked].mean()),
        "accuracy_unmarked": float(correct[~marked].mean()),
        "n_marked": int(marked.sum()),
        "n_unmarked": int((~marked).sum()),
        "p_biopsied_on_ACK_NEV_SEK_marked": float(a.mean()) if len(a) else float("nan"),
        "p_biopsied_on_ACK_NEV_SEK_unmarked": float(b.mean()) if len(b) else float("nan"),
        "n_ACK_NEV_SEK_marked": int(len(a)),
        "n_ACK_NEV_SEK_unmarked": int(len(b)),
        "mann_whitney_p_marked_greater": p,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path, help="`remixformer cv` run directories (fold_*/eval/test)")
    ap.add_argument("--marks", type=Path, default=HERE / "data" / "pad_ufes20_pen_marks.csv")
    ap.add_argument("--metadata", type=Path, help="PAD-UFES-20 metadata.csv (adds the biopsied share)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "pad_pen_marks.json")
    args = ap.parse_args()

    marks = load_marks(args.marks)
    result: dict[str, object] = {"marks_file": str(args.marks), "classes": class_shares(marks)}
    print(f"{len(marks)} listed photos, {int(marks['pen_mark'].sum())} with a pen mark")
    print("| class | listed | marked | share |\n| --- | --- | --- | --- |")
    for c, s in result["classes"].items():  # type: ignore[union-attr]
        print(f"| {c} | {s['photos']} | {s['marked']} | {100 * s['share']:.0f} % |")
    if args.metadata:
        meta = pd.read_csv(args.metadata)
        meta["case_id"] = meta["img_id"].str.replace(r"\.png$", "", regex=True)
        biopsied = meta.set_index("case_id")["biopsed"].reindex(marks.index)
        by = {
            str(k): float(g["pen_mark"].mean()) for k, g in marks.assign(biopsed=biopsied).groupby("biopsed")
        }
        result["marked_share_by_biopsed"] = by
        print(f"marked share, biopsied: {by}")

    print(
        "\n| run | listed photos | acc. marked | acc. unmarked | P(BCC+MEL+SCC) on ACK/NEV/SEK marked | "
        "unmarked | p (marked > unmarked) |\n| --- | --- | --- | --- | --- | --- | --- |"
    )
    runs: dict[str, object] = {}
    for run in args.runs:
        r = shortcut_check(out_of_fold_predictions(run), marks)
        runs[run.name] = r
        print(
            f"| {run.name} | {r['listed_photos_with_prediction']} | {100 * r['accuracy_marked']:.1f} "
            f"(n={r['n_marked']}) | {100 * r['accuracy_unmarked']:.1f} (n={r['n_unmarked']}) | "
            f"{r['p_biopsied_on_ACK_NEV_SEK_marked']:.3f} (n={r['n_ACK_NEV_SEK_marked']}) | "
            f"{r['p_biopsied_on_ACK_NEV_SEK_unmarked']:.3f} (n={r['n_ACK_NEV_SEK_unmarked']}) | "
            f"{r['mann_whitney_p_marked_greater']:.3f} |"
        )
    result["runs"] = runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
