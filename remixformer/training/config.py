"""The run configuration: model, data, training and evaluation sections, saved in every run directory.

Layering (``remixformer.config``): these defaults, then the YAML file(s) (with ``base:``), then
``key=value`` overrides on the command line. Defaults follow the paper's recipe (section IV-B): SGD
with momentum, cosine schedule, initial lr 1e-4, summed cross-entropy, batch 64, 200 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from remixformer.data.config import DataConfig
from remixformer.engine.trainer import TrainerConfig
from remixformer.models.registry import check_sections


@dataclass
class ModelSection:
    """Which preset, which modalities, and overrides of the preset's sections (see ModelConfig).

    Every key of every section is checked (name and type) and the model's sizes are checked together
    when the config resolves, before any data set loads (``models.registry.check_sections``): a typo
    such as ``model.clinical.num_crop`` is an error naming it and the valid keys. Encoder weights are
    section keys like any other: ``clinical.pretrained`` (e.g. timm:swin_tiny_patch4_window7_224, or a
    file), ``dermoscopy.pretrained`` (T_phi1, e.g. timm:vit_small_patch16_224.dino, or a pretrain
    export), ``dermoscopy.region_pretrained`` (R_phi2's blocks, e.g. an ImageNet ViT-S/16).
    """

    # the keys of the earlier release (still read, with a FutureWarning) -> the keys that replaced them
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "clinical_weights": "clinical.pretrained",
        "window_encoder_weights": "dermoscopy.pretrained",
        "region_encoder_weights": "dermoscopy.region_pretrained",
    }
    RENAMED_NULL_IS_DEFAULT: ClassVar[bool] = True  # null weights = the preset's (none)

    preset: str = "remixformer_paper"
    modalities: str = "CDM"
    clinical: dict[str, Any] = field(default_factory=dict)  # keys of models.config.ClinicalConfig
    dermoscopy: dict[str, Any] = field(default_factory=dict)  # keys of DermoscopyConfig
    metadata: dict[str, Any] = field(default_factory=dict)  # keys of MetadataConfig
    fusion: dict[str, Any] = field(default_factory=dict)  # keys of FusionConfig

    def __post_init__(self) -> None:
        sections = {"clinical": self.clinical, "dermoscopy": self.dermoscopy}
        sections |= {"metadata": self.metadata, "fusion": self.fusion}
        checked = check_sections(self.preset, self.modalities, sections, where="model")
        self.clinical, self.dermoscopy = checked["clinical"], checked["dermoscopy"]
        self.metadata, self.fusion = checked["metadata"], checked["fusion"]


@dataclass
class TrainConfig(TrainerConfig):
    """The training loop; the Trainer settings it shares with pretraining are inherited
    (precision, accelerator, devices, num_nodes, strategy, progress_bar, log_every_n_steps,
    limit_train_batches, deterministic)."""

    max_epochs: int = 200
    batch_size: int = 64  # per device; effective: batch_size * devices * num_nodes * accumulate_grad_batches
    eval_batch_size: int | None = None  # default: batch_size
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 1e-4
    momentum: float = 0.9  # SGD
    weight_decay: float = 1e-4  # not applied to norms, biases, tokens, position tables, MSTA templates
    scheduler: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    monitor: str = (
        "val/diag/balanced_accuracy"  # validation metric for the best checkpoint and early stopping
    )
    monitor_mode: Literal["max", "min"] = "max"
    early_stopping_patience: int = 0  # epochs without improvement; 0 = off
    modality_dropout: float = 0.0  # probability of hiding each modality of a training case (robustness)
    # class imbalance (training/balance.py): none, loss (per-class CE weights) or sampler (balanced draws)
    class_balance: Literal["none", "loss", "sampler"] = "none"
    class_weighting: Literal["inverse", "effective"] = "inverse"  # loss weights: 1/n_c or effective number
    class_balance_beta: float = 0.999  # effective number of samples (Cui et al. 2019)
    sampler_power: float = 0.5  # sampler: class c drawn with probability proportional to n_c ** power
    label_smoothing: float = 0.0  # single-label tasks' cross-entropy
    # exponential moving average of the weights (0 = off): validation and the model files use the average
    ema_decay: float = 0.0
    check_val_every_n_epoch: int = 1
    limit_val_batches: float = 1.0

    def __post_init__(self) -> None:
        if self.max_epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"max_epochs ({self.max_epochs}) and batch_size ({self.batch_size}) must be >= 1"
            )
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout must be in [0, 1), got {self.modality_dropout}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 < self.class_balance_beta < 1.0:
            raise ValueError(f"class_balance_beta must be in (0, 1), got {self.class_balance_beta}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay}")
        if not 0.0 <= self.sampler_power <= 1.0:
            raise ValueError(f"sampler_power must be in [0, 1], got {self.sampler_power}")


@dataclass
class EvalConfig:
    split: Literal["test", "val", "train"] = "test"  # evaluated with the best checkpoint after training
    tta_flip: bool = False  # average with horizontally flipped images
    # fit per-class thresholds for the macro F1 at 0.5 (MILK10k's metric) on the validation predictions of
    # the best model, write thresholds.json, and report the evaluated split before and after them
    thresholds: bool = False


@dataclass
class RunConfig:
    name: str = "run"
    output_dir: str = "runs"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Keys that may differ between a run and its --resume (they do not change what is computed).
RESUMABLE_CHANGES = (
    "train.max_epochs",
    "train.progress_bar",
    "train.devices",
    "train.accelerator",
    "train.num_nodes",
    "train.strategy",
    "data.num_workers",
    "data.root",
    "output_dir",
    "train.early_stopping_patience",
)
