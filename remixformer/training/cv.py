"""K-fold cross-validation: every fold a full run in ``<run>/fold_<k>``, resumable per fold, then
``cv_results.json`` and a mean ± std table like the paper's Tables III, X and XIII."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch

from remixformer.config import to_dict
from remixformer.engine.distributed import is_rank_zero
from remixformer.evaluation.stats import cv_table
from remixformer.serialization import remove_temporary_files, write_text_atomic
from remixformer.training.config import RunConfig
from remixformer.training.run import train

log = logging.getLogger(__name__)

TABLE_METRICS = (
    "sensitivity_macro",
    "specificity_macro",
    "precision_macro",
    "auc_macro",
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "threshold_f1_macro",
)


def fold_config(cfg: RunConfig, fold: int, folds: int) -> RunConfig:
    out = copy.deepcopy(cfg)
    out.data.protocol = "kfold"
    out.data.n_folds = folds
    out.data.fold = fold
    return out


def cross_validate(
    cfg: RunConfig,
    folds: int | None = None,
    run_dir: str | Path | None = None,
    eval_device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Run (or finish) every fold: a fold with a summary is done; a fold that was started continues
    from its training state, or starts again if it was stopped before its first state was complete.

    ``folds``: the number of folds, by default ``cfg.data.n_folds``; a different number given here
    replaces it (logged), and the recorded config says the number used. ``eval_device``: where each
    fold's final evaluation runs (default: the device the fold trained on)."""
    if folds is None:
        folds = cfg.data.n_folds
    elif folds != cfg.data.n_folds:
        log.warning(
            "cross-validation: folds=%d replaces data.n_folds=%d of the config", folds, cfg.data.n_folds
        )
    if folds < 2:
        raise ValueError(f"folds (data.n_folds) must be at least 2, got {folds}")
    if folds != cfg.data.n_folds:
        cfg = copy.deepcopy(cfg)
        cfg.data.n_folds = folds
    run_dir = Path(run_dir or Path(cfg.output_dir) / cfg.name)
    if is_rank_zero():
        remove_temporary_files(run_dir)  # of a cv_results.json write that a kill interrupted
    results = []
    for k in range(folds):
        fold_dir = run_dir / f"fold_{k}"
        summary_file = fold_dir / "summary.json"
        if summary_file.exists():
            log.info("fold %d/%d already done (%s)", k + 1, folds, summary_file)
            summary = json.loads(summary_file.read_text())
        else:
            resume = (fold_dir / "config.yaml").exists()  # started: continue it (train() decides how)
            log.info("fold %d/%d: %s", k + 1, folds, "resuming" if resume else "training")
            summary = train(fold_config(cfg, k, folds), fold_dir, resume=resume, eval_device=eval_device)
        results.append(
            {
                "fold": k,
                "run_dir": str(fold_dir),
                "metrics": summary.get("eval", {}),
                "best_epoch": summary.get("best_epoch"),
                "best_score": summary.get("best_score"),  # the monitored validation score there
                "train_time_s": summary.get("train_time_s"),
            }
        )
    out = {"config": to_dict(cfg), "folds": results}
    if is_rank_zero():
        write_text_atomic(run_dir / "cv_results.json", json.dumps(out, indent=2, default=str))
        metrics = [m for m in TABLE_METRICS if all(m in r["metrics"] for r in results)]
        table = cv_table({cfg.name: [r["metrics"] for r in results]}, metrics)
        write_text_atomic(
            run_dir / "cv_summary.md",
            f"# {cfg.name}: {folds}-fold cross-validation (test folds, mean ± std)\n\n{table}\n",
        )
        out["table"] = table
    return out
