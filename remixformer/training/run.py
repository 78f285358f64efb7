"""One training run: data, model, Lightning trainer, run directory, final evaluation.

Run directory (``<output_dir>/<name>`` unless given)::

    config.yaml            the fully resolved config (defaults + files + overrides)
    data.json              the data set: counts, tasks, schema, leakage warning, skipped cases
    splits.csv             case_id, group_id, split, fold
    metrics.csv/.jsonl     one row per epoch
    train.log              the log
    logs/tensorboard/      TensorBoard events
    checkpoints/best.safetensors, last.safetensors     model files (weights + config + labels)
    checkpoints/last.state.safetensors                 the training state for --resume
    eval/<split>/          report.md/.json, predictions.csv, ROC and confusion PNGs
    thresholds.json        with eval.thresholds: the decision rule fitted on the validation split
    summary.json           best epoch, validation score, test metrics, processes' weight checksums
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from remixformer.config import from_dict, load_yaml, to_dict
from remixformer.data.registry import load_dataset
from remixformer.data.splits import read_splits, splits_from_config, write_splits
from remixformer.engine.callbacks import STATE_FILE, EpochMetrics, progress_callback
from remixformer.engine.devices import trainer_device
from remixformer.engine.distributed import end_process_group
from remixformer.engine.rundir import changed_keys, prepare_run_dir, run_directory, seed_everything
from remixformer.engine.trainer import build_trainer
from remixformer.evaluation.evaluate import data_notes, evaluate_cases
from remixformer.evaluation.thresholds import THRESHOLDS_FILE, fit_thresholds
from remixformer.models import create_model
from remixformer.models.checkpoint import load_model
from remixformer.serialization import write_text_atomic
from remixformer.training.balance import describe as describe_balance
from remixformer.training.balance import write_balance
from remixformer.training.callbacks import BEST_MODEL, RunCheckpoint
from remixformer.training.config import RESUMABLE_CHANGES, RunConfig
from remixformer.training.datamodule import RemixDataModule
from remixformer.training.module import RemixFormerModule

log = logging.getLogger(__name__)


def check_resumable(stored: Path, cfg: RunConfig) -> None:
    """A resumed run must compute what the interrupted one computed."""
    diff = changed_keys(from_dict(RunConfig, load_yaml(stored)), cfg, RESUMABLE_CHANGES)
    if diff:
        raise ValueError(
            f"--resume: the config differs from the run's {stored} in {diff}; only {list(RESUMABLE_CHANGES)} "
            "may change when resuming"
        )


def build_model_for(cfg: RunConfig, table: Any):
    m = cfg.model
    lacking = sorted(set(m.modalities.upper()) - set(table.modalities))
    if lacking:
        raise ValueError(
            f"model.modalities {m.modalities!r} uses {lacking} but data set {table.name!r} provides only "
            f"{table.modalities!r}"
        )
    return create_model(
        m.preset,
        m.modalities,
        tasks=table.tasks,
        metadata_schema=table.schema.to_dict(),
        clinical=m.clinical,
        dermoscopy=m.dermoscopy,
        metadata=m.metadata,
        fusion=m.fusion,
    )


def train(
    cfg: RunConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    eval_device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train (or resume) one run and evaluate its best model; returns the run summary. The final
    evaluation runs on ``eval_device``, by default on the device the run trained on (rank 0's GPU after
    a GPU run, the CPU after a CPU run)."""
    from lightning.pytorch.callbacks import EarlyStopping

    run_dir = Path(run_dir or Path(cfg.output_dir) / cfg.name)
    state = run_dir / "checkpoints" / STATE_FILE
    if resume and (run_dir / "config.yaml").exists():
        check_resumable(run_dir / "config.yaml", cfg)
    resume = prepare_run_dir(run_dir, STATE_FILE, resume)  # no complete state yet: from the beginning
    t0 = time.time()
    seed_everything(cfg.seed)
    table = load_dataset(cfg.data, modalities=cfg.model.modalities)
    if resume and (run_dir / "splits.csv").exists():
        splits = read_splits(table, run_dir / "splits.csv")
    else:
        splits = splits_from_config(table, cfg.data)
    model = build_model_for(cfg, table)
    with run_directory(run_dir, cfg, "train.log") as writer:
        if writer:
            data_info = table.summary() | {"splits": {k: len(v) for k, v in splits.items()}}
            write_text_atomic(run_dir / "data.json", json.dumps(data_info, indent=2, default=str))
            write_splits(table, splits, run_dir, cfg=cfg.data)
            if table.leaky_fields_included:
                log.warning("%s", data_info.get("warning"))
        log.info(
            "run %s: %d train / %d val / %d test cases; model %s (%s), %.1fM parameters",
            run_dir,
            len(splits["train"]),
            len(splits["val"]),
            len(splits["test"]),
            cfg.model.preset,
            model.modalities,
            model.num_parameters() / 1e6,
        )

        extra = {
            "run": cfg.name,
            "dataset": table.name,
            "data": to_dict(cfg.data),
            "leaky_fields_included": list(table.leaky_fields_included),
        }
        checkpoint = RunCheckpoint(run_dir, cfg.train.monitor, cfg.train.monitor_mode, extra)
        callbacks: list = [EpochMetrics(run_dir)]
        if cfg.train.early_stopping_patience > 0 and splits["val"]:
            callbacks.append(
                EarlyStopping(
                    cfg.train.monitor,
                    patience=cfg.train.early_stopping_patience,
                    mode=cfg.train.monitor_mode,
                    check_on_train_epoch_end=True,
                )
            )
        callbacks.append(progress_callback(cfg.train.progress_bar))
        # last, as Lightning's own checkpoints: the training state of an epoch holds every callback's
        # state after that epoch, and its metrics row is written before it
        callbacks.append(checkpoint)
        t = cfg.train
        trainer = build_trainer(
            run_dir,
            callbacks,
            t,
            max_epochs=t.max_epochs,
            accumulate_grad_batches=t.accumulate_grad_batches,
            gradient_clip_val=t.gradient_clip_val,
            check_val_every_n_epoch=t.check_val_every_n_epoch,
            limit_val_batches=t.limit_val_batches,
        )
        dm = RemixDataModule(cfg, table, splits, model.config)
        balance = dm.balance()
        log.info("%s", describe_balance(balance))
        if writer:
            write_balance(balance, run_dir)
        weights = {name: e["loss_weights"] for name, e in balance["tasks"].items() if "loss_weights" in e}
        module = RemixFormerModule(model, cfg.train, cfg.seed, class_weights=weights)
        trainer.fit(module, datamodule=dm, ckpt_path=str(state) if resume else None)
        summary: dict[str, Any] = {
            "run_dir": str(run_dir),
            "world_size": trainer.world_size,
            "weight_checksums": module.weight_checksums,
            "epochs_trained": trainer.current_epoch,
            "best_epoch": checkpoint.best_epoch,
            "best_score": checkpoint.best_score,
            "monitor": cfg.train.monitor,
        }
        is_zero = trainer.is_global_zero
        device = trainer_device(trainer) if eval_device is None else torch.device(eval_device)
        end_process_group()  # collective work is over; rank 0 evaluates alone
        if is_zero:
            log.info("final evaluation on %s", device)
            summary["eval"] = evaluate_run(run_dir, cfg, table, splits, cfg.eval.split, device=device)
            summary["train_time_s"] = round(time.time() - t0, 1)
            write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary


def evaluate_run(
    run_dir: Path,
    cfg: RunConfig,
    table: Any,
    splits: dict[str, list[int]],
    split: str,
    withhold: str = "",
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Evaluate the run's best model on ``split`` into ``eval/<split>`` on ``device``; returns the flat
    metrics.

    With ``eval.thresholds`` the decision rule is first fitted on the validation split (its report in
    ``eval/val``, the rule in ``thresholds.json``) and the report of ``split`` shows its effect."""
    if not splits.get(split):
        log.warning("no %s cases: nothing to evaluate", split)
        return {}
    model = load_model(run_dir / "checkpoints" / BEST_MODEL)
    kwargs = {
        "withhold": withhold,
        "batch_size": cfg.train.eval_batch_size or cfg.train.batch_size,
        "num_workers": cfg.data.num_workers,
        "tta_flip": cfg.eval.tta_flip,
        "progress": cfg.train.progress_bar,
        "max_image_pixels": cfg.data.max_image_pixels,
        "device": device,
    }
    suffix = f"_without_{withhold}" if withhold else ""
    rule = None
    if cfg.eval.thresholds:
        if split == "val" or not splits.get("val"):
            raise ValueError(
                "eval.thresholds fits the decision rule on the validation split, so it needs validation "
                f"cases (data.val_fraction > 0) and an evaluated split other than val (eval.split={split!r})"
            )
        got: list = []
        evaluate_cases(
            model,
            table,
            splits["val"],
            run_dir / "eval" / f"val{suffix}",
            title=f"{cfg.name}: {table.name} val (the decision rule is fitted here)",
            notes=data_notes(table, cfg.data, "val", model.modalities),
            predictions=got,
            **kwargs,
        )
        d = got[0].diagnosis
        rule = fit_thresholds(
            got[0].targets[d.name], got[0].probs[d.name], d.classes, task=d.name, case_ids=got[0].case_ids
        )
        if not withhold:
            rule.save(run_dir / THRESHOLDS_FILE)
        log.info(
            "decision rule fitted on %d validation cases: macro F1 at 0.5 %.4f -> %.4f (%s)",
            rule.fitted_on["n_cases"],
            rule.validation["threshold_f1_macro_before"],
            rule.validation["threshold_f1_macro_after"],
            ", ".join(f"{c} {t:.3f}" for c, t in zip(rule.classes, rule.thresholds)),
        )
    metrics = evaluate_cases(
        model,
        table,
        splits[split],
        run_dir / "eval" / (split + suffix),
        title=f"{cfg.name}: {table.name} {split}",
        notes=data_notes(table, cfg.data, split, model.modalities),
        decision_rule=rule,
        **kwargs,
    )
    return metrics["summary"]
