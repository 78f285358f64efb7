"""How much diagnosis a clinical encoder's features carry before fine-tuning: k-NN and linear probes.

The standard check of a self-supervised encoder (DINO's k-NN evaluation): freeze the clinical branch's
global encoder G, take its class token for every PAD-UFES-20 photo (resized to G's input size,
ImageNet normalisation as in training), and fit a 20-nearest-neighbour classifier (cosine) and a
class-balanced logistic regression on the training cases of each fold; report the test folds' balanced
accuracy, mean ± std. The folds are those of a ``remixformer cv`` run (its ``fold_0/splits.csv``), so
the probe uses the same patient-grouped test cases as the fine-tuned rows in docs/results.md. The first
row is always the randomly initialised encoder (model seed 0), the baseline in the same run.

    python benchmarks/clinical_encoder_probe.py \\
        --root ../shared/data/pad-ufes-20-sample --splits runs/padcv/pad_C/fold_0/splits.csv \\
        runs/pretrain/dino_small_clinical_isic2018/teacher_backbone.safetensors

Writes ``benchmarks/results/clinical_encoder_probe.json`` (or ``--out``). About a minute per encoder
on one CPU thread for the 815-photo sample with the small preset.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier

from remixformer.data.transforms import MEAN, STD
from remixformer.models.registry import create_model

HERE = Path(__file__).resolve().parent


def class_tokens(preset: str, weights: str | None, paths: list[Path], batch: int = 64) -> np.ndarray:
    """G's class token for each photo (N, C), with G from ``weights`` or random (seed 0)."""
    torch.manual_seed(0)
    clinical = {"pretrained": weights} if weights else {}
    model = create_model(preset, "C", clinical=clinical).eval()
    branch = model.branches["C"]
    encoder, size = branch.global_encoder, branch.cfg.global_size
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    out = []
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            x = torch.stack(
                [
                    torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((size, size)))).permute(
                        2, 0, 1
                    )
                    for p in paths[i : i + batch]
                ]
            )
            x = (x.float() / 255 - mean) / std
            cls, _, _ = encoder(x, need_scores=False)
            out.append(cls)
    return torch.cat(out).numpy()


def probe(features: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict[str, list[float]]:
    """Balanced accuracy of the k-NN and linear probes on each test fold."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    scores: dict[str, list[float]] = {"knn": [], "linear": []}
    for k in sorted(set(folds)):
        train, test = folds != k, folds == k
        knn = KNeighborsClassifier(20, weights="distance").fit(x[train], labels[train])
        linear = LogisticRegression(max_iter=3000, class_weight="balanced").fit(x[train], labels[train])
        scores["knn"].append(balanced_accuracy_score(labels[test], knn.predict(x[test])))
        scores["linear"].append(balanced_accuracy_score(labels[test], linear.predict(x[test])))
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="*", help="clinical-encoder exports (remixformer pretrain) to compare")
    ap.add_argument("--root", type=Path, required=True, help="PAD-UFES-20 folder (metadata.csv, images/)")
    ap.add_argument("--splits", type=Path, required=True, help="a `remixformer cv` run's fold_0/splits.csv")
    ap.add_argument("--preset", default="remixformer_small")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "clinical_encoder_probe.json")
    args = ap.parse_args()

    splits = pd.read_csv(args.splits)
    meta = pd.read_csv(args.root / "metadata.csv")
    meta["case_id"] = meta["img_id"].str.replace(r"\.png$", "", regex=True)
    table = splits.merge(meta[["case_id", "img_id", "diagnostic"]], on="case_id", how="left")
    if table["diagnostic"].isna().any():
        missing = table.loc[table["diagnostic"].isna(), "case_id"].iloc[0]
        raise SystemExit(f"{args.splits}: case {missing!r} is not in {args.root / 'metadata.csv'}")
    paths = [args.root / "images" / f for f in table["img_id"]]
    labels, folds = table["diagnostic"].to_numpy(), table["fold"].to_numpy()

    rows = []
    print("| encoder | k-NN BACC | linear BACC | seconds |\n| --- | --- | --- | --- |")
    for weights in [None, *args.weights]:
        start = time.perf_counter()
        s = probe(class_tokens(args.preset, weights, paths), labels, folds)
        row = {
            "weights": weights or "random (seed 0)",
            **{f"{m}_bacc_mean": float(np.mean(v)) for m, v in s.items()},
            **{f"{m}_bacc_std": float(np.std(v)) for m, v in s.items()},
            "per_fold": s,
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        print(
            f"| {row['weights']} | {100 * row['knn_bacc_mean']:.1f} ± {100 * row['knn_bacc_std']:.1f} "
            f"| {100 * row['linear_bacc_mean']:.1f} ± {100 * row['linear_bacc_std']:.1f} "
            f"| {row['seconds']:.0f} |"
        )
    result = {"preset": args.preset, "splits": str(args.splits), "cases": len(table), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
