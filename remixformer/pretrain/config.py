"""``PretrainConfig``: DINO pretraining of the window encoder T_phi1 (paper section IV-B, design.md §5),
or of the clinical branch's CLS-Swin encoder (``backbone.encoder: clinical_encoder``, not in the paper).

Layered like every config of the project (``remixformer.config``): these defaults, then YAML files, then
``key=value`` overrides. The defaults are DINO's published recipe (``main_dino.py``) with the paper's
values where it gives them: ViT-S/16 on 256^2 windows, two 256^2 global and several 96^2 local views,
colour jitter (0.4, 0.4, 0.2, 0.1), student temperature 0.1, teacher temperature 0.04 -> 0.07 over 30
epochs, batch 256.

Sizes left ``null`` follow the backbone preset (:func:`resolve_sizes`): the window is the preset's
``dermoscopy.window_size`` (256 for ``remixformer_paper``), tiles come from the image resized to its
``dermoscopy.image_size`` (1024; 2048 for large images), local views are 96/256 of the window. For the
clinical encoder a "window" is the whole photo resized to ``clinical.image_size``; the global views have
the global encoder's input size (``clinical.global_size``) and the local views the LSM crop size
(``clinical.crop_size``), the two scales the encoder sees in the model.

Images come from folders (``windows.images``) or from a data set's cases (``data`` with
``data_splits``): the same loader, split protocol, fold and seed as a training run, so pretraining can
be kept off that run's test cases (``test`` is refused in ``data_splits``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from remixformer.data.config import DEFAULT_MAX_IMAGE_PIXELS, DataConfig
from remixformer.engine.trainer import TrainerConfig
from remixformer.models.registry import check_sections, resolve_config

LOCAL_FRACTION = 96 / 256  # DINO's local views (96^2) relative to its global views (the paper's 256^2)


@dataclass
class BackboneConfig:
    """The ViT being pretrained: exactly ``WindowEncoder.vit`` of a model preset, so the export loads
    strictly into that preset's T_phi1."""

    # ``init_weights`` before this release (still read, with a FutureWarning)
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"init_weights": "pretrained"}

    preset: str = "remixformer_paper"  # remixformer_paper: ViT-S/16 on 256^2; remixformer_small: width 64
    # which encoder of the preset: the dermoscopy window encoder T_phi1 (the paper's DINO), or the
    # clinical branch's CLS-Swin encoder G (whose stages 1-3 L shares; L's stage 4 starts as G's)
    encoder: Literal["window_encoder", "clinical_encoder"] = "window_encoder"
    dermoscopy: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's dermoscopy section
    clinical: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's clinical section
    pretrained: str | None = "timm:vit_small_patch16_224.dino"  # or a file; null: from scratch
    drop_path_rate: float | None = None  # student's stochastic depth; null: the preset's (0.1). Teacher: 0

    def __post_init__(self) -> None:
        # the sections' keys and types, and the encoder's sizes, checked as the config resolves

        modality = "C" if self.encoder == "clinical_encoder" else "D"
        sections = {"dermoscopy": self.dermoscopy, "clinical": self.clinical}
        checked = check_sections(self.preset, modality, sections, where="backbone")
        self.dermoscopy, self.clinical = checked["dermoscopy"], checked["clinical"]


@dataclass
class HeadConfig:
    """DINO projection head: MLP, L2-normalised bottleneck, weight-normalised last layer."""

    out_dim: int = 65536  # K, the number of prototypes
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    nlayers: int = 3
    norm_last_layer: bool = True  # fix the last layer's norms to 1 (more stable)

    def __post_init__(self) -> None:
        if min(self.out_dim, self.hidden_dim, self.bottleneck_dim, self.nlayers) < 1:
            raise ValueError("head: out_dim, hidden_dim, bottleneck_dim and nlayers must be >= 1")


@dataclass
class WindowsConfig:
    """Where windows come from: random crops at native resolution and tiles of the resized image."""

    images: list[str] = field(default_factory=list)  # folders, searched recursively; labels not needed
    extensions: list[str] = field(default_factory=lambda: [".jpg", ".jpeg", ".png"])
    window_size: int | None = None  # null: the preset's dermoscopy.window_size (256)
    resize_size: int | None = None  # tiles: image resized to this square; null: dermoscopy.image_size (1024)
    large_resize_size: int | None = None  # tiles of large images; null: 2 x resize_size (2048)
    large_min_side: int | None = (
        None  # an image is large when its shorter side is >= this; null: large_resize
    )
    native_fraction: float = 0.3  # share of images giving native crops instead of tiles (paper: 10k of 33.5k)
    native_crops_per_image: int = 16  # random window positions per native-crop image (drawn once)
    max_background_fraction: float = 0.5  # drop a window with more background than this; 1.0 keeps all
    dark_threshold: int = 30  # luminance below this: black vignette of the dermatoscope, or padding
    bright_threshold: int = 250  # luminance above this: white padding, glare
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    num_workers: int = 0  # DataLoader workers (decoding and multi-crop)
    scan_workers: int = 0  # processes reading the images once to build the window index

    def __post_init__(self) -> None:
        if not 0.0 <= self.native_fraction <= 1.0:
            raise ValueError(f"native_fraction must be in [0, 1], got {self.native_fraction}")
        if not 0.0 <= self.max_background_fraction <= 1.0:
            raise ValueError(f"max_background_fraction must be in [0, 1], got {self.max_background_fraction}")
        if self.native_crops_per_image < 0 or self.num_workers < 0 or self.scan_workers < 0:
            raise ValueError("native_crops_per_image, num_workers and scan_workers must be >= 0")


@dataclass
class CropsConfig:
    """Multi-crop augmentation (DINO's ``DataAugmentationDINO``, bicubic resampling)."""

    global_size: int | None = None  # null: the window size (256)
    local_size: int | None = None  # null: 96/256 of the window, a multiple of the patch size (96)
    n_local: int = 8
    global_scale: tuple[float, float] = (0.4, 1.0)  # area fraction of the window
    local_scale: tuple[float, float] = (0.05, 0.4)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.2  # DINO's default (the paper is silent)
    blur_p: tuple[float, float, float] = (1.0, 0.1, 0.5)  # first global, second global, local views
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # radius (standard deviation) in pixels, PIL's filter
    solarize_p: float = 0.2  # second global view only

    def __post_init__(self) -> None:
        if self.n_local < 0:
            raise ValueError(f"n_local must be >= 0, got {self.n_local}")
        for name in ("global_scale", "local_scale"):
            lo, hi = getattr(self, name)
            if not 0.0 < lo <= hi <= 1.0:
                raise ValueError(f"{name} must satisfy 0 < low <= high <= 1, got {(lo, hi)}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")


@dataclass
class DINOConfig:
    """Loss, teacher and the collapse guard."""

    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 30  # linear warm-up 0.04 -> 0.07, then constant
    center_momentum: float = 0.9
    momentum_teacher: float = 0.996  # EMA momentum, cosine-scheduled to momentum_teacher_end
    momentum_teacher_end: float = 1.0
    collapse_low: float = 0.05  # warn when the teacher's entropy / log(K) stays below this ...
    collapse_high: float = 0.95  # ... or above this ...
    collapse_patience: int = 3  # ... for this many consecutive epochs

    def __post_init__(self) -> None:
        if min(self.student_temp, self.teacher_temp, self.warmup_teacher_temp) <= 0:
            raise ValueError("temperatures must be positive")
        if not 0.0 <= self.center_momentum < 1.0:
            raise ValueError(f"center_momentum must be in [0, 1), got {self.center_momentum}")
        if not 0.0 <= self.momentum_teacher <= self.momentum_teacher_end <= 1.0:
            raise ValueError("need 0 <= momentum_teacher <= momentum_teacher_end <= 1")
        if not 0.0 <= self.collapse_low < self.collapse_high <= 1.0:
            raise ValueError("need 0 <= collapse_low < collapse_high <= 1")


@dataclass
class OptimConfig:
    """AdamW with per-step cosine schedules for learning rate and weight decay (DINO)."""

    epochs: int = 100
    batch_size: int = 256  # windows per device and step
    lr: float = 0.0005  # per 256 windows: the lr used is lr * batch_size * devices * accumulation / 256
    min_lr: float = 1e-6
    warmup_epochs: float = 10.0  # linear warm-up of the learning rate from 0
    weight_decay: float = 0.04  # cosine to weight_decay_end; never on biases and norms
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0  # max norm of each parameter's gradient (DINO's clipping); 0 = off
    freeze_last_layer_epochs: int = 1  # the head's last layer gets no update in the first epoch(s)
    accumulate_grad_batches: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.accumulate_grad_batches < 1:
            raise ValueError("epochs, batch_size and accumulate_grad_batches must be >= 1")
        if self.lr <= 0 or self.min_lr < 0 or self.clip_grad < 0 or self.warmup_epochs < 0:
            raise ValueError("lr must be positive; min_lr, clip_grad and warmup_epochs non-negative")


@dataclass
class PretrainConfig:
    name: str = "dino"
    output_dir: str = "runs/pretrain"
    seed: int = 0
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    crops: CropsConfig = field(default_factory=CropsConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # shared with training runs
    # images of a data set's cases instead of folders: the data section of a training run (same
    # protocol, fold and seed give the same split), and which of its splits to take images from
    data: DataConfig | None = None
    data_splits: list[str] = field(default_factory=lambda: ["train", "val"])
    # which images of the data set's cases: null = the encoder's own (D for the window encoder, C for the
    # clinical encoder); D for a clinical encoder reads dermoscopy images (skin images as a stand-in)
    data_modality: Literal["C", "D"] | None = None

    def __post_init__(self) -> None:
        bad = sorted(set(self.data_splits) - {"train", "val"})
        if bad:
            raise ValueError(
                f"data_splits may name train and val only, got {bad}: pretraining on test cases would leak "
                "them into every model that starts from the export"
            )
        if not self.data_splits:
            raise ValueError("data_splits is empty: name train and/or val")

    @property
    def modality(self) -> str:
        """The modality of a data set's images to read: ``data_modality``, else the encoder's own."""
        if self.data_modality:
            return self.data_modality
        return "C" if self.backbone.encoder == "clinical_encoder" else "D"


# Keys that may differ between a run and its --resume: they do not change what is computed. (The number
# of epochs and of devices set the per-step schedules, so they may not change.)
RESUMABLE_CHANGES = (
    "output_dir",
    "trainer.progress_bar",
    "trainer.accelerator",
    "trainer.log_every_n_steps",
    "windows.num_workers",
    "windows.scan_workers",
    "windows.images",
    "data.root",
    "data.num_workers",
)


def dermoscopy_config(cfg: PretrainConfig):
    """The ``DermoscopyConfig`` of the backbone preset with the overrides: the T_phi1 being pretrained."""
    try:
        return resolve_config(
            cfg.backbone.preset, modalities="D", dermoscopy=dict(cfg.backbone.dermoscopy)
        ).dermoscopy
    except ValueError as e:
        raise ValueError(f"backbone: {e}") from e


def clinical_config(cfg: PretrainConfig):
    """The ``ClinicalConfig`` of the backbone preset with the overrides: the CLS-Swin being pretrained."""
    try:
        return resolve_config(
            cfg.backbone.preset, modalities="C", clinical=dict(cfg.backbone.clinical)
        ).clinical
    except ValueError as e:
        raise ValueError(f"backbone: {e}") from e


def resolve_sizes(cfg: PretrainConfig) -> PretrainConfig:
    """A copy of ``cfg`` with every ``null`` size filled in from the backbone preset (and checked)."""
    if cfg.backbone.encoder == "clinical_encoder":
        return _resolve_clinical_sizes(cfg)
    d = dermoscopy_config(cfg)
    w = cfg.windows
    window = w.window_size or d.window_size
    resize = w.resize_size or max(d.image_size, window)
    large = w.large_resize_size or 2 * resize
    windows = dataclasses.replace(
        w,
        window_size=window,
        resize_size=resize,
        large_resize_size=large,
        large_min_side=w.large_min_side or large,
    )
    c = cfg.crops
    local = c.local_size or max(d.patch_size, round(window * LOCAL_FRACTION / d.patch_size) * d.patch_size)
    crops = dataclasses.replace(c, global_size=c.global_size or window, local_size=local)
    for name, size in (
        ("windows.window_size", window),
        ("crops.global_size", crops.global_size),
        ("crops.local_size", local),
    ):
        if size % d.patch_size:
            raise ValueError(
                f"{name} ({size}) must be a multiple of the backbone's patch size {d.patch_size}"
            )
    for name, size in (("windows.resize_size", resize), ("windows.large_resize_size", large)):
        if size % window:
            raise ValueError(f"{name} ({size}) must be a multiple of the window size {window} (tiles)")
    return dataclasses.replace(cfg, windows=windows, crops=crops)


def _resolve_clinical_sizes(cfg: PretrainConfig) -> PretrainConfig:
    """Clinical encoder: one "window" per photo (resized to ``clinical.image_size``), global views at the
    global encoder's input size, local views at the LSM crop size; both must suit CLS-Swin's stages."""
    c = clinical_config(cfg)
    w = cfg.windows
    window = w.window_size or c.image_size
    resize = w.resize_size or window
    windows = dataclasses.replace(
        w,
        window_size=window,
        resize_size=resize,
        large_resize_size=w.large_resize_size or resize,
        large_min_side=w.large_min_side or 10**9,  # photos are never tiled at a larger size
    )
    crops = dataclasses.replace(
        cfg.crops,
        global_size=cfg.crops.global_size or c.global_size,
        local_size=cfg.crops.local_size or c.crop_size,
    )
    unit = c.patch_size * 2 ** (len(c.depths) - 1)
    for name, size in (("crops.global_size", crops.global_size), ("crops.local_size", crops.local_size)):
        if size % unit:
            raise ValueError(
                f"{name} ({size}) must be a multiple of {unit} (patch size {c.patch_size} times "
                f"2^{len(c.depths) - 1} for the merges) for the CLS-Swin encoder"
            )
    if resize % window:
        raise ValueError(
            f"windows.resize_size ({resize}) must be a multiple of windows.window_size ({window})"
        )
    return dataclasses.replace(cfg, windows=windows, crops=crops)
