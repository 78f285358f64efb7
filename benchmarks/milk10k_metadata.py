"""MILK10k on its tables alone: the metadata branch (modality M) against a logistic-regression anchor,
by the same stratified 5-fold cross-validation, one case per lesion.

    python benchmarks/milk10k_metadata.py --root ../shared/data/milk10k            # ~15 min on 2 cores
    python benchmarks/milk10k_metadata.py --root ... --quick                         # 2 folds, 3 epochs

Rows (every one on the folds of ``remixformer cv``: ``fold_assignment(table, 5, seed)``, grouped by lesion,
stratified by diagnosis; the test fold is scored, never used to choose anything):

- ``anchor``: scikit-learn ``LogisticRegression(class_weight="balanced")`` on standardised numbers (age,
  skin tone, the 14 MONET scores; blanks get the training mean) and one-hot categories (sex, site, the two
  image manipulations; blank is a category), fitted on the four non-test folds: the issue's anchor.
- ``anchor (train split)``: the same fitted on the run's training split only, so that the decision rule
  can be fitted on its validation split: the like-for-like comparison of the rule.
- ``M``: ``remixformer cv -c configs/milk10k/m_small.yaml`` (training split; best epoch by validation BACC;
  thresholds fitted on the validation split), with and without the MONET scores (``data.monet``).

Columns: balanced accuracy (argmax), macro AUC, the challenge's macro F1 at 0.5 before and after the
decision rule, the macro F1 of the top class (argmax), and the wall time. Writes
``benchmarks/results/milk10k_metadata.json`` (``-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

import numpy as np  # noqa: E402

from remixformer.config import from_dict, resolve  # noqa: E402
from remixformer.data import DataConfig, load_cases  # noqa: E402
from remixformer.data.datasets import milk10k  # noqa: E402
from remixformer.data.splits import fold_assignment, split_indices  # noqa: E402
from remixformer.evaluation import metrics as M  # noqa: E402
from remixformer.evaluation.thresholds import fit_thresholds  # noqa: E402
from remixformer.training.config import RunConfig  # noqa: E402

CONFIG = ROOT / "configs" / "milk10k" / "m_small.yaml"
COLUMNS = (
    ("balanced_accuracy", "BACC"),
    ("auc_macro", "AUC"),
    ("threshold_f1_macro", "F1@0.5"),
    ("threshold_f1_macro_fitted", "F1@0.5 after rule"),
    ("f1_macro", "F1 top-1"),
)
NUMERIC = ("age_approx", "skin_tone_class")
CATEGORIES = ("sex", "site", "clinical_image_manipulation", "dermoscopic_image_manipulation")


def anchor_features(table, train: np.ndarray, monet: bool) -> np.ndarray:
    """Standardised numbers (training mean for blanks) and one-hot categories (blank = a category)."""
    numeric = list(NUMERIC)
    if monet:
        numeric += [milk10k.monet_field(p, c) for _, p in milk10k.IMAGE_TYPES.values() for c in milk10k.MONET]
    x = np.array(
        [[np.nan if c.metadata.get(f) is None else c.metadata[f] for f in numeric] for c in table.cases]
    )
    mean = np.nanmean(x[train], axis=0)
    x = np.where(np.isnan(x), mean, x)
    x = (x - x[train].mean(0)) / (x[train].std(0) + 1e-12)
    onehot = []
    for f in CATEGORIES:
        values = [str(c.metadata.get(f)) for c in table.cases]
        levels = sorted(set(values))
        onehot.append(np.array([[v == lv for lv in levels] for v in values], dtype=np.float64))
    return np.hstack([x, *onehot])


def scores(y: np.ndarray, p: np.ndarray, p_rule: np.ndarray | None) -> dict[str, float]:
    m = M.single_label_metrics(y, p)
    out = {k: float(m[k]) for k in ("balanced_accuracy", "auc_macro", "threshold_f1_macro", "f1_macro")}
    out["threshold_f1_macro_fitted"] = float(M.threshold_f1_macro(y, p_rule)) if p_rule is not None else None
    return out


def run_anchor(table, folds: np.ndarray, monet: bool, train_split_only: bool, val_fraction: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    y = table.labels()
    out = []
    for k in range(int(folds.max()) + 1):
        t0 = time.time()
        s = split_indices(table, "kfold", int(folds.max()) + 1, k, val_fraction, seed)
        test = np.asarray(s["test"])
        assert np.array_equal(np.sort(test), np.flatnonzero(folds == k))
        fit_on = np.asarray(s["train"] if train_split_only else s["train"] + s["val"])
        x = anchor_features(table, fit_on, monet)
        lr = LogisticRegression(class_weight="balanced", max_iter=5000).fit(x[fit_on], y[fit_on])
        p = lr.predict_proba(x[test])
        p_rule = None
        if train_split_only:
            val = np.asarray(s["val"])
            rule = fit_thresholds(y[val], lr.predict_proba(x[val]), milk10k.CLASSES)
            p_rule = rule.apply(p)
        out.append({"fold": k, **scores(y[test], p, p_rule), "time_s": round(time.time() - t0, 2)})
    return out


def run_m_branch(root: str, run_dir: Path, monet: bool, folds: int, overrides: list[str]):
    from remixformer.training.cv import cross_validate

    cfg = resolve(
        RunConfig,
        [CONFIG],
        [f"data.root={root}", f"data.monet={str(monet).lower()}", f"data.n_folds={folds}", *overrides],
    )
    t0 = time.time()
    result = cross_validate(cfg, folds=folds, run_dir=run_dir)
    elapsed = time.time() - t0
    out = []
    for f in result["folds"]:
        m = f["metrics"]
        summary = json.loads((Path(f["run_dir"]) / "summary.json").read_text())
        out.append(
            {
                "fold": f["fold"],
                **{k: m.get(k) for k, _ in COLUMNS},
                "best_epoch": f["best_epoch"],
                "val_threshold_f1_macro": m.get("val.threshold_f1_macro"),
                "val_threshold_f1_macro_fitted": m.get("val.threshold_f1_macro_fitted"),
                "time_s": summary.get("train_time_s"),
            }
        )
    return out, elapsed, cfg


def mean_std(rows: list[dict], key: str) -> tuple[float, float]:
    v = np.array([r[key] for r in rows if r.get(key) is not None], dtype=float)
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def table_md(results: dict[str, dict]) -> str:
    header = ["Method", *(h for _, h in COLUMNS), "time"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for name, r in results.items():
        cells = []
        for key, _ in COLUMNS:
            m, s = mean_std(r["folds"], key)
            cells.append("n/a" if np.isnan(m) else f"{m:.3f} ± {s:.3f}")
        lines.append("| " + " | ".join([name, *cells, f"{r['time_s']:.0f} s"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the folder holding the MILK10k tables")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help="data.seed: folds and validation carve-out")
    ap.add_argument("--run-dir", default="runs/bench_milk10k_metadata", help="where the M-branch runs go")
    ap.add_argument("--out", help="JSON output (default benchmarks/results/milk10k_metadata[-quick].json)")
    ap.add_argument("--quick", action="store_true", help="2 folds, 3 epochs: a smoke run")
    ap.add_argument("--skip-m", action="store_true", help="the anchors only")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the M-branch config")
    args = ap.parse_args(argv)
    folds_n = 2 if args.quick else args.folds
    overrides = [f"data.seed={args.seed}", *args.overrides] + (["train.max_epochs=3"] if args.quick else [])
    out_path = Path(
        args.out or ROOT / "benchmarks" / "results" / f"milk10k_metadata{'-quick' if args.quick else ''}.json"
    )

    cfg = resolve(RunConfig, [CONFIG], [f"data.root={args.root}", *overrides])
    data = from_dict(DataConfig, {"dataset": "milk10k", "root": args.root, "seed": args.seed})
    table = load_cases(data)
    folds = fold_assignment(table, folds_n, args.seed)
    print(
        f"MILK10k: {len(table)} lesions, {folds_n} folds (seed {args.seed}) of {np.bincount(folds).tolist()}"
    )

    results: dict[str, dict] = {}
    for monet in (True, False):
        tag = "with MONET" if monet else "without MONET"
        for train_only, name in ((False, f"anchor (LR), {tag}"), (True, f"anchor (LR, train split), {tag}")):
            t0 = time.time()
            rows = run_anchor(table, folds, monet, train_only, cfg.data.val_fraction, args.seed)
            results[name] = {"folds": rows, "time_s": time.time() - t0}
            print(f"{name}: {time.time() - t0:.1f} s", flush=True)
    if not args.skip_m:
        for monet in (True, False):
            name = f"M branch, {'with' if monet else 'without'} MONET"
            run_dir = Path(args.run_dir) / ("m_monet" if monet else "m_no_monet")
            rows, elapsed, used = run_m_branch(args.root, run_dir, monet, folds_n, overrides)
            results[name] = {"folds": rows, "time_s": elapsed, "run_dir": str(run_dir)}
            print(f"{name}: {elapsed:.1f} s", flush=True)
    md = table_md(results)
    print("\n" + md)
    payload = {
        "what": "MILK10k tables only: metadata branch vs logistic-regression anchor, same folds",
        "command": " ".join(["python", "benchmarks/milk10k_metadata.py", *(argv or sys.argv[1:])]),
        "folds": folds_n,
        "seed": args.seed,
        "fold_sizes": np.bincount(folds).tolist(),
        "m_config": str(CONFIG.relative_to(ROOT)),
        "m_overrides": overrides,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "table": md,
        "results": {
            k: {**v, **{f"mean.{c}": mean_std(v["folds"], c)[0] for c, _ in COLUMNS}}
            for k, v in results.items()
        },
    }
    try:
        import sklearn
        import torch

        payload["machine"] |= {"torch": torch.__version__, "sklearn": sklearn.__version__}
    except ImportError:
        pass
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
