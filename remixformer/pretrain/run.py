"""One DINO pretraining run: window index, student/teacher, the shared Lightning trainer, export.
The backbone is the window encoder T_phi1 or the clinical CLS-Swin encoder (``backbone.encoder``).

Run directory (``<output_dir>/<name>`` unless given)::

    config.yaml                         the resolved config (sizes filled in from the preset)
    windows.csv                         the window index: image, kind (native/tile), left, top, resize
    data.json                           files found, unreadable files (listed), windows kept and filtered
    metrics.csv/.jsonl                  one row per epoch (loss, temperatures, teacher entropy, lr, time)
    pretrain.log                        the log (collapse warnings included)
    logs/tensorboard/                   TensorBoard events, per step
    checkpoints/last.state.safetensors  the training state for --resume
    teacher_backbone.safetensors        the teacher backbone as T_phi1 weights (updated every epoch)
    summary.json                        final loss and entropy, warnings, export path, time
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from remixformer.config import from_dict, load_yaml
from remixformer.engine.callbacks import STATE_FILE, EpochMetrics, progress_callback
from remixformer.engine.distributed import end_process_group
from remixformer.engine.rundir import changed_keys, prepare_run_dir, run_directory, seed_everything
from remixformer.engine.trainer import build_trainer
from remixformer.pretrain.augment import MultiCrop
from remixformer.pretrain.callbacks import CollapseGuard, PretrainCheckpoint, epoch_metric
from remixformer.pretrain.config import RESUMABLE_CHANGES, PretrainConfig, resolve_sizes
from remixformer.pretrain.meta_arch import DINOMetaArch
from remixformer.pretrain.module import DINOModule, WindowDataModule
from remixformer.pretrain.windows import WindowDataset, WindowIndex, build_index, dataset_images
from remixformer.serialization import write_text_atomic

log = logging.getLogger(__name__)


def stored_config(run_dir: Path) -> PretrainConfig:
    return from_dict(PretrainConfig, load_yaml(run_dir / "config.yaml"))


def check_resumable(old: PretrainConfig, new: PretrainConfig) -> None:
    """A resumed run must compute what the interrupted one computed (the schedules included)."""
    diff = changed_keys(old, new, RESUMABLE_CHANGES)
    if diff:
        raise ValueError(
            f"--resume: the config differs from the run's in {diff}; only {list(RESUMABLE_CHANGES)} "
            "may change when resuming (epochs and devices set the per-step schedules)"
        )


def pretrain(
    cfg: PretrainConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Pretrain (or resume) and export the teacher backbone; returns the run summary.

    ``callbacks``: extra Lightning callbacks (after the run's own checkpoint and guard callbacks).
    """
    cfg = resolve_sizes(cfg)
    run_dir = Path(run_dir or Path(cfg.output_dir) / cfg.name)
    state = run_dir / "checkpoints" / STATE_FILE
    if resume and (run_dir / "config.yaml").exists():
        old = stored_config(run_dir)
        if not cfg.windows.images:  # the window index is stored: images need not be named again
            cfg.windows.images = list(old.windows.images)
        check_resumable(old, cfg)
    resume = prepare_run_dir(run_dir, STATE_FILE, resume)  # no complete state yet: from the beginning
    t0 = time.time()
    seed_everything(cfg.seed)

    index_file = run_dir / "windows.csv"
    if resume and index_file.exists():
        info = json.loads((run_dir / "data.json").read_text()) if (run_dir / "data.json").exists() else {}
        index = WindowIndex.from_csv(index_file, info)
        log.info(
            "resuming with the stored window index: %d windows from %d images", len(index), len(index.images)
        )
    elif cfg.data is not None:
        found, source = dataset_images(cfg.data, cfg.data_splits, cfg.modality)
        log.info(
            "%s images of %d %s case(s) of %s (%s split, fold %s; its %d test cases left out)",
            source["images"],
            source["cases"],
            "/".join(cfg.data_splits),
            source["dataset"],
            cfg.data.protocol,
            cfg.data.fold,
            source["test_cases_excluded"],
        )
        index = build_index(cfg.windows, cfg.seed, found)
        index.info["source"] = source
    else:
        index = build_index(cfg.windows, cfg.seed)
        index.info["source"] = {"folders": [str(Path(f).resolve()) for f in cfg.windows.images]}

    with run_directory(run_dir, cfg, "pretrain.log") as writer:
        if writer and not (resume and index_file.exists()):
            index.to_csv(index_file)
            write_text_atomic(run_dir / "data.json", json.dumps(index.info, indent=2))
        meta = DINOMetaArch(cfg)
        init = (
            "resumed from the training state" if resume else meta.load_init_weights(cfg.backbone.pretrained)
        )
        n_params = sum(p.numel() for p in meta.student.parameters()) / 1e6
        log.info(
            "DINO run %s: %d windows of %d^2; %s; student %.1fM parameters (%s, head K=%d); views 2 x %d^2 "
            "+ %d x %d^2",
            run_dir,
            len(index),
            index.window_size,
            init,
            n_params,
            cfg.backbone.preset,
            cfg.head.out_dim,
            cfg.crops.global_size,
            cfg.crops.n_local,
            cfg.crops.local_size,
        )

        dataset = WindowDataset(
            index, MultiCrop(cfg.crops), seed=cfg.seed, max_image_pixels=cfg.windows.max_image_pixels
        )
        checkpoint = PretrainCheckpoint(
            run_dir, {"run": cfg.name, "windows": len(index), "pretrained_on": index.info.get("source", {})}
        )
        guard = CollapseGuard(cfg.dino.collapse_low, cfg.dino.collapse_high, cfg.dino.collapse_patience)
        cbs: list = [guard, EpochMetrics(run_dir)]
        cbs.append(progress_callback(cfg.trainer.progress_bar))
        cbs += list(callbacks or [])
        cbs.append(checkpoint)  # last: the state of an epoch holds the guard's count after that epoch
        trainer = build_trainer(
            run_dir,
            cbs,
            cfg.trainer,
            max_epochs=cfg.optim.epochs,
            accumulate_grad_batches=cfg.optim.accumulate_grad_batches,
            find_unused_parameters=False,
        )
        module = DINOModule(cfg, meta)
        data = WindowDataModule(dataset, cfg.optim.batch_size, cfg.seed, cfg.windows.num_workers)
        trainer.fit(module, datamodule=data, ckpt_path=str(state) if resume else None)

        summary: dict[str, Any] = {
            "run_dir": str(run_dir),
            "export": str(checkpoint.export_path),
            "epochs_trained": trainer.current_epoch,
            "global_step": trainer.global_step,
            "world_size": trainer.world_size,
            "teacher_checksums": module.teacher_checksums,  # one per process; equal under DDP
            "windows": len(index),
            "images": len(index.images),
            "unreadable_files": index.info.get("unreadable", 0),
            "init": init,
            "loss": epoch_metric(trainer, "pretrain/loss"),
            "teacher_entropy_ratio": epoch_metric(trainer, "pretrain/teacher_entropy_ratio"),
            "teacher_mean_entropy_ratio": epoch_metric(trainer, "pretrain/teacher_mean_entropy_ratio"),
            "collapse_warnings": guard.warnings,
        }
        is_zero = trainer.is_global_zero
        end_process_group()  # collective work is over
        if is_zero:
            summary["time_s"] = round(time.time() - t0, 1)
            write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
        return summary
