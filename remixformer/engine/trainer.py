"""The Lightning ``Trainer`` every run uses (supervised training and DINO pretraining alike): devices
and DDP, precision, TensorBoard, checkpoints through safetensors (never pickled), our samplers."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from remixformer import faults
from remixformer.engine.checkpoint_io import SafetensorsCheckpointIO
from remixformer.engine.distributed import wants_ddp

log = logging.getLogger(__name__)

FIND_UNUSED = "ddp_find_unused_parameters_true"


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
    deterministic: bool = False  # torch deterministic algorithms (slower on GPUs; warn-only on CUDA)


# Operations of this code base that have no deterministic CUDA kernel (torch raises on them when
# deterministic algorithms are required; read from the code; docs/training.md, "Deterministic runs").
CUDA_NONDETERMINISTIC_OPS = (
    "the backward of F.interpolate(mode='bicubic') that resizes CLS-Swin's relative-position table when a "
    "stage's window differs from the table's (layers/windows.py, relative_position_bias; "
    "window_rule 'scaled': the small and tiny presets, not the paper preset's fixed 7x7 windows)",
    "the backward of timm's resample_abs_pos_embed (bicubic interpolation) that resizes a ViT's position "
    "embedding to another token grid: the clinical ViT backbones on their crops (dynamic_img_size), "
    "DINO pretraining's local views, the region encoder R_phi2 on a window grid other than the one it "
    "was built for (models/dermoscopy.py)",
)
CUBLAS_WORKSPACE = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}  # deterministic cuBLAS (NVIDIA's documented value)


@dataclass(frozen=True)
class DeterministicMode:
    """What ``deterministic: true`` becomes: Lightning's ``Trainer(deterministic=...)`` argument, the
    environment variables to set where they are not set, and whether the run is (or may be) on CUDA."""

    lightning: bool | str
    env: dict[str, str] = field(default_factory=dict)
    cuda: bool = False


def deterministic_mode(deterministic: bool, accelerator: str) -> DeterministicMode:
    """``deterministic`` on ``accelerator`` -> the Trainer's argument and the environment.

    Off: ``False``. On the CPU (``cpu``, or ``auto``/``gpu`` without CUDA; MPS and others alike):
    ``True``, torch's deterministic algorithms required. On CUDA (``cuda``, or ``gpu``/``auto`` where CUDA
    is available, as Lightning resolves them): ``"warn"`` (``torch.use_deterministic_algorithms(True,
    warn_only=True)``) and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``: some operations of the model have no
    deterministic CUDA kernel (:data:`CUDA_NONDETERMINISTIC_OPS`); with ``True`` they would stop the run,
    with ``"warn"`` they run nondeterministically, with a warning, and everything else is deterministic.
    """
    if not deterministic:
        return DeterministicMode(False)
    acc = str(accelerator).lower()
    cuda = acc == "cuda" or (acc in ("gpu", "auto") and torch.cuda.is_available())
    if not cuda:
        return DeterministicMode(True)
    return DeterministicMode("warn", dict(CUBLAS_WORKSPACE), cuda=True)


def apply_deterministic_mode(mode: DeterministicMode) -> None:
    """Set ``mode``'s environment variables that are not set, and say once what stays nondeterministic."""
    for name, value in mode.env.items():
        os.environ.setdefault(name, value)
    if mode.cuda:
        log.warning(
            "deterministic: true on CUDA runs torch's deterministic algorithms in warn-only mode "
            "(Lightning deterministic='warn', CUBLAS_WORKSPACE_CONFIG=%s): these operations have no "
            "deterministic CUDA kernel and stay nondeterministic where they run (torch warns when they "
            "do): %s. Everything else uses deterministic kernels.",
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
            "; ".join(CUDA_NONDETERMINISTIC_OPS),
        )


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


def ddp_strategy(trainer: TrainerConfig, find_unused_parameters: bool = True) -> str:
    """The Lightning strategy for ``trainer``: its own ``strategy`` unless that is ``"auto"``; with
    ``"auto"``, when more than one process may run (:func:`~remixformer.engine.distributed.wants_ddp`:
    any ``devices`` value naming several devices, ``num_nodes`` > 1, torchrun, SLURM, MPI),
    ``"ddp_find_unused_parameters_true"`` (``"ddp"`` with ``find_unused_parameters=False``), else
    ``"auto"`` (one device).

    Why find unused parameters: the model skips a branch whose modality no case of the batch has, so on
    a rank whose batch lacks, say, every dermoscopy image that branch's parameters get no gradient;
    plain DDP then waits for gradients that never come and fails on the next step ("Expected to have
    finished reduction in the prior iteration"). The cost: after every forward pass DDP walks the
    autograd graph from the outputs to mark the parameters that were not used, on each rank; its static
    graph optimisations are off. The walk grows with the number of autograd nodes, not with the image
    sizes; the alternative (every branch always runs, on zeros) would cost a branch's full forward and
    backward for inputs that are absent. docs/training.md gives the cost measured. Pretraining, whose
    every parameter is used in every step, passes ``find_unused_parameters=False``.
    """
    if trainer.strategy != "auto" or not wants_ddp(trainer.devices, trainer.num_nodes, trainer.accelerator):
        return trainer.strategy
    return FIND_UNUSED if find_unused_parameters else "ddp"


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

    With several processes (any ``devices`` value naming more than one device, several nodes, or
    under torchrun / SLURM / MPI) ``strategy="auto"`` becomes DDP with ``find_unused_parameters``
    (:func:`ddp_strategy`), because a branch whose modality is absent from a whole batch on one rank gets
    no gradient in that step. Samplers are ours (``use_distributed_sampler=False``): they shard by rank.
    """
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    quiet_lightning()
    if faults.enabled():  # a test kills this process at a chosen batch
        callbacks = [batch_pause_points(), *callbacks]
    t = trainer
    strategy = ddp_strategy(t, find_unused_parameters)
    deterministic = deterministic_mode(t.deterministic, t.accelerator)
    apply_deterministic_mode(deterministic)

    def build(strategy: str):
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
            logger=TensorBoardLogger(
                str(run_dir), name="logs", version="tensorboard", default_hp_metric=False
            ),
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
            deterministic=deterministic.lightning,
            default_root_dir=str(run_dir),
        )

    built = build(strategy)
    if strategy == "auto" and find_unused_parameters and _plain_ddp(built.strategy):
        # Lightning resolved more processes than wants_ddp foresaw: its resolution is the last word
        log.warning(
            "devices=%r, num_nodes=%d on accelerator %r gave %d processes: rebuilding the trainer with %s",
            t.devices,
            t.num_nodes,
            t.accelerator,
            built.world_size,
            FIND_UNUSED,
        )
        built = build(FIND_UNUSED)
    return built


def _plain_ddp(strategy: object) -> bool:
    """Whether Lightning's resolved ``strategy`` is DDP without ``find_unused_parameters``."""
    from lightning.pytorch.strategies import DDPStrategy

    if not isinstance(strategy, DDPStrategy):
        return False
    kwargs = getattr(strategy, "_ddp_kwargs", None)  # DDP's keywords; Lightning has no public getter
    return not (isinstance(kwargs, dict) and kwargs.get("find_unused_parameters"))
