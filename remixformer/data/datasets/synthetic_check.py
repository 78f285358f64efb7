"""Model-free difficulty check of a synthetic set: simple classifiers on generic pixel features.

For each case: clinical features from a window around the lesion at full resolution (what the LSM zoom
sees) or from the photo shrunk 2x (what the global encoder sees, the lesion position given for free);
dermoscopy features from the full 256^2 image or from the image shrunk to 64^2; metadata one-hot.
Features are generic statistics of a small filter bank (2x2 checker, Laplacian, gradient) per colour
channel and the mean colours; a logistic regression is scored by grouped 5-fold cross-validation.

Run: ``python -m remixformer.data.datasets.synthetic_check DIR`` (``DIR`` written by ``remixformer synth``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import convolve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from remixformer.config import from_dict
from remixformer.data.config import DataConfig
from remixformer.data.datasets.manifest import load_manifest

log = logging.getLogger(__name__)

_KERNELS = {
    "checker": np.array([[1.0, -1.0], [-1.0, 1.0]]),
    "laplace": np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
    "grad_x": np.array([[-1.0, 1.0]]),
    "grad_y": np.array([[-1.0], [1.0]]),
}


def _channels(img: np.ndarray) -> list[np.ndarray]:
    r, g, b = (img[..., i] for i in range(3))
    return [r, g, b, (r + g + b) / 3, b - r, r - g]


def _stats(resp: np.ndarray, mask: np.ndarray) -> list[float]:
    a = np.abs(resp[mask])
    if a.size == 0:
        return [0.0] * 5
    z = resp[mask] - resp[mask].mean()
    kurt = float((z**4).mean() / ((z**2).mean() ** 2 + 1e-9))
    return [float(a.mean()), float(a.std()), float(np.percentile(a, 90)), float(np.percentile(a, 99)), kurt]


def filter_features(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Filter-bank statistics (per channel) and mean colours of ``img`` (H, W, 3 float) inside ``mask``."""
    feats: list[float] = []
    for ch in _channels(img):
        feats.append(float(ch[mask].mean()) if mask.any() else 0.0)
        for k in _KERNELS.values():
            feats += _stats(convolve(ch, k, mode="nearest"), mask)
    return np.asarray(feats, dtype=np.float64)


def _disk(shape: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def clinical_features(path: str, lesion: tuple[float, float, float], shrink: int) -> np.ndarray:
    """Features of a window around the lesion, at full resolution or after shrinking the photo."""
    with Image.open(path) as im:
        size = im.size[0]
        if shrink > 1:
            im = im.resize((size // shrink, size // shrink), Image.Resampling.BILINEAR)
        img = np.asarray(im, dtype=np.float64)
    cx, cy, r = (v / shrink for v in lesion)
    return filter_features(img, _disk(img.shape[:2], cx, cy, 0.8 * r))


def dermoscopy_features(path: str, size: int | None) -> np.ndarray:
    with Image.open(path) as im:
        if size is not None:
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        img = np.asarray(im, dtype=np.float64)
    h = img.shape[0]
    return filter_features(img, _disk(img.shape[:2], h / 2, h / 2, 0.42 * h))


def _cv_predict(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold predicted probabilities of a standardised logistic regression."""
    classes = np.unique(y)
    proba = np.zeros((len(y), len(classes)))
    for train, test in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.5))
        model.fit(x[train], y[train])
        proba[np.ix_(test, np.searchsorted(classes, model.classes_))] = model.predict_proba(x[test])
    return proba


def measure(root: str | Path, seed: int = 0) -> dict[str, dict[str, float]]:
    root = Path(root)
    cfg = from_dict(DataConfig, {"dataset": "synthetic", "root": str(root)})
    table = load_manifest(root / "manifest.csv", root / "schema.json", cfg, name="synthetic")
    latents = pd.read_csv(root / "latents.csv", keep_default_na=False).set_index("case_id")
    y = table.labels()
    groups = table.group_ids
    n = len(table)
    feats: dict[str, list[np.ndarray | None]] = {k: [] for k in ("C_zoom", "C_half", "D_full", "D_64")}
    for c in table.cases:
        if c.clinical:
            lesion = tuple(float(v) for v in latents.loc[c.case_id, "lesions"].split(";")[0].split(","))
            feats["C_zoom"].append(clinical_features(c.clinical[0], lesion, 1))
            feats["C_half"].append(clinical_features(c.clinical[0], lesion, 2))
        else:
            feats["C_zoom"].append(None)
            feats["C_half"].append(None)
        feats["D_full"].append(dermoscopy_features(c.dermoscopy[0], None) if c.dermoscopy else None)
        feats["D_64"].append(dermoscopy_features(c.dermoscopy[0], 64) if c.dermoscopy else None)

    def block(name: str) -> np.ndarray:
        rows = feats[name]
        width = len(next(r for r in rows if r is not None))
        present = np.array([r is not None for r in rows], dtype=np.float64)[:, None]
        x = np.stack([r if r is not None else np.full(width, np.nan) for r in rows])
        mean = np.nanmean(x, axis=0)
        x = np.where(np.isnan(x), mean, x)  # absent modality: the mean, plus a presence flag
        return np.hstack([x, present])

    blocks = {k: block(k) for k in feats} | {"M": table.metadata_matrix().astype(np.float64)}
    subsets = {
        "C (lesion window, full resolution)": ["C_zoom"],
        "C (photo shrunk 2x)": ["C_half"],
        "D (256^2)": ["D_full"],
        "D (shrunk to 64^2)": ["D_64"],
        "M": ["M"],
        "C+D": ["C_zoom", "D_full"],
        "C+M": ["C_zoom", "M"],
        "D+M": ["D_full", "M"],
        "C+D+M": ["C_zoom", "D_full", "M"],
        "C+D+M, low resolution (C 2x, D 64^2)": ["C_half", "D_64", "M"],
    }
    out: dict[str, dict[str, float]] = {}
    for name, parts in subsets.items():
        x = np.hstack([blocks[p] for p in parts])
        pred = _cv_predict(x, y, groups, seed).argmax(1)
        out[name] = {
            "accuracy": float((pred == y).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        }

    has_c = np.array([bool(c.clinical) for c in table.cases])
    pattern = latents.loc[table.case_ids, "clinical_pattern"].to_numpy()
    for name in ("C_zoom", "C_half"):
        pred = _cv_predict(blocks[name][has_c], pattern[has_c], groups[has_c], seed).argmax(1)
        classes = np.unique(pattern[has_c])
        out[f"clinical micro-pattern from {name}"] = {
            "accuracy": float((classes[pred] == pattern[has_c]).mean())
        }
    has_d = np.array([bool(c.dermoscopy) for c in table.cases])
    for name in ("D_full", "D_64"):
        aucs = []
        for t in table.tasks[1:]:
            target = table.labels(t.name)[has_d] > 0  # attribute present (pn: typical or atypical)
            proba = _cv_predict(blocks[name][has_d], target.astype(int), groups[has_d], seed)[:, 1]
            aucs.append(roc_auc_score(target, proba))
        out[f"dermoscopy attributes from {name}"] = {"mean_auc": float(np.mean(aucs))}
    out["_cases"] = {"n": float(n)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a folder written by `remixformer synth`")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = measure(args.root)
    for name, r in results.items():
        print(f"{name:45s} " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
