"""The Lightning ``Trainer`` every run uses (supervised training and DINO pretraining alike): devices
and DDP, precision, TensorBoard, checkpoints through safetensors (never pickled), our samplers."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from remixformer import faults
from remixformer.engine.checkpoint_io import SafetensorsCheckpointIO
from remixformer.engine.distributed import wants_ddp


@dataclass
class TrainerConfig:
    """The Trainer settings both run configs share (``train.*`` of a training run, ``trainer.*`` of a
    pretraining run); passed whole to :func:`build_trainer`."""

    precision: str = "32-true"  # "16-mixed", "bf16-mixed" on GPUs
    accelerator: str = "auto"  # cpu, gpu, auto
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # auto picks DDP when several devices are used
    progress_bar: bool = True
    log_every_n_steps: int = 10
    limit_train_batches: float = 1.0  # fraction (or number) of batches per epoch
    deterministic: bool = False  # torch deterministic algorithms (slower on GPUs)


def quiet_lightning() -> None:
    """Lightning adds its own console handler (every line printed twice next to ours) and prints
    hardware tips at INFO; keep its warnings, drop the rest of the chatter."""
    import lightning  # noqa: F401  (its import installs the handler)

    if logging.getLogger().handlers:
        lg = logging.getLogger("lightning")
        lg.handlers = [h for h in lg.handlers if type(h) is not logging.StreamHandler]
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.trainer.connectors.checkpoint_connector",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message="The number of training batches .* is smaller than the logging")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def batch_pause_points():
    """A callback with the pause point ``batch:<epoch>:<batch>`` before each training batch, for tests
    that kill a run mid-epoch (:mod:`remixformer.faults`)."""
    import lightning as L

    class BatchPausePoints(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            faults.pause_point(f"batch:{trainer.current_epoch}:{batch_idx}")

    return BatchPausePoints()


def build_trainer(
    run_dir: str | Path,
    callbacks: list,
    trainer: TrainerConfig,
    *,
    max_epochs: int,
    accumulate_grad_batches: int = 1,
    gradient_clip_val: float | None = None,
    check_val_every_n_epoch: int = 1,
    limit_val_batches: float = 1.0,
    find_unused_parameters: bool = True,
):
    """A Trainer writing TensorBoard logs under ``run_dir/logs/tensorboard``, set up by ``trainer`` (the
    section both run configs share); the loop settings that live elsewhere in each config are keywords.

        With several devices or nodes (or under torchrun / SLURM) ``strategy="auto"`` becomes DDP; with
        ``find_unused_parameters`` because a branch whose modality is absent from a whole batch gets no
        gradient in that step. Samplers are ours (``use_distributed_sampler=False``): they shard by rank.
    """
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    quiet_lightning()
    if faults.enabled():  # a test kills this process at a chosen batch
        callbacks = [batch_pause_points(), *callbacks]
    t = trainer
    strategy = t.strategy
    if strategy == "auto" and wants_ddp(t.devices, t.num_nodes):
        strategy = "ddp_find_unused_parameters_true" if find_unused_parameters else "ddp"
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=strategy,
        precision=t.precision,
        accumulate_grad_batches=accumulate_grad_batches,
        gradient_clip_val=gradient_clip_val,
        callbacks=callbacks,
        logger=TensorBoardLogger(str(run_dir), name="logs", version="tensorboard", default_hp_metric=False),
        plugins=[SafetensorsCheckpointIO()],
        enable_checkpointing=False,  # our callbacks write the files
        use_distributed_sampler=False,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=t.log_every_n_steps,
        check_val_every_n_epoch=check_val_every_n_epoch,
        limit_train_batches=t.limit_train_batches,
        limit_val_batches=limit_val_batches,
        deterministic=t.deterministic,
        default_root_dir=str(run_dir),
    )
