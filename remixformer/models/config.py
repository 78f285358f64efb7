"""The model's configuration: every size and ablation switch, saved inside each checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from remixformer.modalities import LETTERS as MODALITY_LETTERS  # noqa: F401 (re-exported)
from remixformer.modalities import parse_modalities
from remixformer.tasks import TaskSpec, normalize_tasks

# Bounds of a plausible model, checked before anything is built (a checkpoint's header is data from
# outside: an edited one must not make the loader build millions of blocks or multi-GB inputs).
MAX_INPUT_SIZE = 4096  # pixels per side of an input image or window
MAX_WIDTH = 16384  # embedding and hidden widths
MAX_BLOCKS = 256  # transformer blocks of one encoder
MAX_COUNT = 65536  # heads, crops, templates, windows per chunk


@dataclass
class ClinicalConfig:
    """Clinical branch: CLS-Swin global encoder, lesion selection (LSM), local encoder, cross-scale fusion."""

    image_size: int = 896  # the photo as the branch receives it; LSM cuts its crops from this resolution
    global_size: int = 384  # the downsampled copy the global encoder G sees
    crop_size: int = 224  # side of each lesion crop (full-resolution pixels) fed to the local encoder L
    # G and L: "cls_swin" (the paper's CLS-Swin, sized by the fields below) or a timm ViT (Table X's ViT
    # rows; one ViT serves G and L, patch_size 16; embed_dim, depths, num_heads, windows do not apply)
    backbone: Literal["cls_swin", "vit_small_patch16_224", "vit_base_patch16_224"] = "cls_swin"
    patch_size: int = 4
    conv_stem: bool = (
        False  # convolutional stem instead of the linear patch embedding (presets trained from scratch)
    )
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7  # window of CLS-Swin's attention and relative-position tables
    # "fixed": `window_size` at every input size, grids padded to a multiple as Swin does (the paper's
    # 7x7; the paper preset). "scaled": the window follows the grid from `window_size` at `ref_size`
    # (timm's rule, 12x12 at 384^2); the default, so that checkpoints written before the choice existed
    # keep the windows they were trained with
    window_rule: Literal["fixed", "scaled"] = "scaled"
    ref_size: int = 224  # input size at which `window_size` applies under the "scaled" rule
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    lsm: bool = True  # lesion selection + local encoder; off = the global encoder alone
    num_crops: int = 4  # K_p: crops taken at inference (top-K cells)
    num_samples: int | None = None  # N: cells sampled in training (attention sampling); None = num_crops
    # Not in the paper (both off by default); training aids for a clinical branch trained from scratch:
    # LSM sampling from S^(1/T) renormalised (T < 1 sharpens the draw and scales the estimator's gradient
    # by 1/T; inference takes the same top-K cells whatever T), and deep supervision: the task losses on
    # a linear head over G's class token, with this weight, added to the training loss
    lsm_temperature: float = 1.0
    deep_supervision: float = 0.0
    csf: bool = True  # cross-scale fusion; off = global and local class tokens are concatenated
    csf_heads: int = 8
    grad_checkpointing: bool = False  # recompute Swin blocks in backward to save activation memory
    pretrained: str | None = None  # "timm:swin_tiny_patch4_window7_224", a file path, or None


@dataclass
class DermoscopyConfig:
    """Dermoscopy branch: HRWE (ViT per window + MSTA) and the region-level encoder."""

    image_size: int = 1024  # S: the image is resized to S x S and cut into (S / window_size)^2 windows
    hrwe: bool = True  # off = a single-level encoder on the whole image resized to `single_level_size`
    # the window encoder T_phi1 (or the single-level encoder): "vit", a ViT built from the fields below
    # (ViT-S/16 by default, ViT-B/16 with embed_dim 768 and num_heads 12), or a timm Swin (Table XII's
    # Swin rows; patch_size, embed_dim, depth, num_heads and conv_stem do not apply, MSTA must be off)
    backbone: Literal["vit", "swin_tiny_patch4_window7_224", "swin_base_patch4_window7_224"] = "vit"
    window_size: int = 256
    single_level_size: int = 512
    patch_size: int = 16
    conv_stem: bool = (
        False  # convolutional stem instead of the linear patch embedding (presets trained from scratch)
    )
    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    region_depth: int = 12
    region_heads: int = 6
    region_dim: int | None = None  # width of R_phi2; None = T_phi1's width (else a projection maps to it)
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.1
    msta: bool = True  # multi-scale texture attention
    num_templates: int = 32  # K_s
    window_chunk_size: int = 16  # windows encoded per chunk
    checkpoint_windows: bool = True  # activation checkpointing per chunk while training
    pretrained: str | None = None  # window encoder T_phi1: "timm:vit_small_patch16_224.dino", a path, or None
    # region encoder R_phi2's blocks and norm from a ViT of the same shape (the paper starts everything but
    # T_phi1 from ImageNet): "timm:vit_small_patch16_224.augreg_in21k_ft_in1k", a file, or None (random)
    region_pretrained: str | None = None


# width of each timm ViT the clinical branch can use
CLINICAL_VIT_WIDTHS = {"vit_small_patch16_224": 384, "vit_base_patch16_224": 768}

# output width of each timm Swin the dermoscopy branch can use (its last stage)
SWIN_WIDTHS = {"swin_tiny_patch4_window7_224": 768, "swin_base_patch4_window7_224": 1024}


def encoder_width(d: DermoscopyConfig) -> int:
    """Width of the dermoscopy branch's window (or single-level) encoder."""
    return SWIN_WIDTHS.get(d.backbone, d.embed_dim)


@dataclass
class MetadataConfig:
    hidden_dim: int = 128  # width of g^M = ReLU(BN(Linear(one-hot)))
    dropout: float = 0.0  # dropout on g^M (not in the paper; 0 = none): a wide branch on small tables

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"metadata.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class FusionConfig:
    """Cross-modality fusion (CMF) and the task heads."""

    dim: int = 384
    num_heads: int = 8
    head_dropout: float = 0.0
    # Not in the paper (0 = off): each branch's embedding gets its own linear task head, and this weight
    # times their task losses is added to the training loss (training only; the fused heads answer). A
    # multi-modal model trained on the fused loss alone lets its quickest branch carry it while the others
    # stay weak, and can end below its best single modality (Wang et al. 2020, "What makes training
    # multi-modal classification networks hard?"); docs/model.md
    branch_supervision: float = 0.0

    def __post_init__(self) -> None:
        if self.branch_supervision < 0:
            raise ValueError(f"fusion.branch_supervision must be >= 0, got {self.branch_supervision}")


@dataclass
class ModelConfig:
    # ``name`` before this release; checkpoints written then still load (models/checkpoint.py)
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"name": "preset"}

    preset: str = "remixformer_paper"
    modalities: str = "CDM"
    tasks: list[dict[str, Any]] = field(default_factory=list)
    metadata_dim: int = 0
    metadata_schema: dict[str, Any] | None = None  # stored so that a checkpoint can encode raw metadata
    clinical: ClinicalConfig = field(default_factory=ClinicalConfig)
    dermoscopy: DermoscopyConfig = field(default_factory=DermoscopyConfig)
    metadata: MetadataConfig = field(default_factory=MetadataConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self) -> None:
        self.modalities = normalize_modalities(self.modalities)
        self.tasks = [t.to_dict() for t in normalize_tasks(self.tasks or {"diag": 2})]
        if "M" in self.modalities and self.metadata_dim <= 0:
            raise ValueError(
                f"modalities {self.modalities!r} include metadata (M) but metadata_dim is "
                f"{self.metadata_dim}; "
                "pass metadata_dim (the one-hot width of the schema, unknown slots included)"
            )
        check_limits(self)
        check_geometry(self)

    @property
    def task_specs(self) -> tuple[TaskSpec, ...]:
        return tuple(TaskSpec.from_dict(t) for t in self.tasks)


def normalize_modalities(modalities: str) -> str:
    """'dc' -> 'CD'. Raises ValueError on an empty set or an unknown letter (``parse_modalities``)."""
    return parse_modalities(modalities)


def _bounded(where: str, value: Any, high: float, kind: type = int) -> None:
    ok = isinstance(value, kind) and not isinstance(value, bool) and 0 < value <= high
    if not ok:
        raise ValueError(f"{where} must be a positive {kind.__name__} of at most {high:,}, got {value!r}")


def check_limits(cfg: ModelConfig) -> None:
    """Every size positive and within the bounds of a plausible model (MAX_* above)."""
    c, d = cfg.clinical, cfg.dermoscopy
    for name in ("image_size", "global_size", "crop_size", "patch_size", "window_size", "ref_size"):
        _bounded(f"clinical.{name}", getattr(c, name), MAX_INPUT_SIZE)
    for name in ("image_size", "window_size", "single_level_size", "patch_size"):
        _bounded(f"dermoscopy.{name}", getattr(d, name), MAX_INPUT_SIZE)
    for where, value in (
        ("clinical.embed_dim", c.embed_dim),
        ("dermoscopy.embed_dim", d.embed_dim),
        ("dermoscopy.region_dim", d.region_dim or 1),
        ("metadata.hidden_dim", cfg.metadata.hidden_dim),
        ("fusion.dim", cfg.fusion.dim),
    ):
        _bounded(where, value, MAX_WIDTH)
    if cfg.metadata_dim:
        _bounded("metadata_dim", cfg.metadata_dim, MAX_COUNT)
    for where, value in (("clinical.depths", c.depths), ("clinical.num_heads", c.num_heads)):
        if not isinstance(value, (tuple, list)) or not 0 < len(value) <= 16:
            raise ValueError(f"{where} must be a list of 1 to 16 numbers, got {value!r}")
        for v in value:
            _bounded(where, v, MAX_BLOCKS if "depths" in where else MAX_COUNT)
    _bounded("clinical.depths (their sum)", sum(c.depths), MAX_BLOCKS)
    for name in ("depth", "region_depth"):
        _bounded(f"dermoscopy.{name}", getattr(d, name), MAX_BLOCKS)
    for where, value in (
        ("clinical.num_crops", c.num_crops),
        ("clinical.csf_heads", c.csf_heads),
        ("dermoscopy.num_heads", d.num_heads),
        ("dermoscopy.region_heads", d.region_heads),
        ("dermoscopy.num_templates", d.num_templates),
        ("dermoscopy.window_chunk_size", d.window_chunk_size),
        ("fusion.num_heads", cfg.fusion.num_heads),
    ):
        _bounded(where, value, MAX_COUNT)
    if c.num_samples is not None:
        _bounded("clinical.num_samples", c.num_samples, MAX_COUNT)
    for where, value in (("clinical.mlp_ratio", c.mlp_ratio), ("dermoscopy.mlp_ratio", d.mlp_ratio)):
        _bounded(where, float(value) if isinstance(value, int) else value, 64.0, float)
    if len(cfg.tasks) > 1024:
        raise ValueError(f"at most 1,024 tasks, got {len(cfg.tasks)}")


def check_geometry(cfg: ModelConfig) -> None:
    """Raise ValueError early, with the numbers, when sizes do not fit together."""
    c, d = cfg.clinical, cfg.dermoscopy
    if "C" in cfg.modalities:
        n = len(c.depths)
        if len(c.num_heads) != n:
            raise ValueError(f"clinical: depths {c.depths} and num_heads {c.num_heads} differ in length")
        stride = c.patch_size * 2 ** (n - 1)  # pixels per cell of G's last grid
        if c.backbone != "cls_swin":
            stride = 16
            if c.conv_stem:
                raise ValueError(
                    f"clinical.backbone {c.backbone} has its own patch embedding; conv_stem: false"
                )
            if c.lsm and c.csf and CLINICAL_VIT_WIDTHS[c.backbone] % c.csf_heads:
                raise ValueError(
                    f"clinical.csf_heads {c.csf_heads} does not divide {c.backbone}'s width "
                    f"{CLINICAL_VIT_WIDTHS[c.backbone]}"
                )
        if c.global_size % stride:
            raise ValueError(
                f"clinical.global_size {c.global_size} must be a multiple of {stride} (the pixels per cell "
                "of G's last grid: patch_size * 2^(stages-1) for CLS-Swin, 16 for a ViT)"
            )
        if c.lsm:
            if c.crop_size % stride:
                raise ValueError(f"clinical.crop_size {c.crop_size} must be a multiple of {stride}")
            if c.crop_size > c.image_size:
                raise ValueError(
                    f"clinical.crop_size {c.crop_size} is larger than clinical.image_size {c.image_size}"
                )
            if c.num_crops < 1 or (c.num_samples is not None and c.num_samples < 1):
                raise ValueError(f"clinical: num_crops ({c.num_crops}) and num_samples must be >= 1")
            cells = (c.global_size // stride) ** 2
            if c.num_crops > cells:
                raise ValueError(
                    f"clinical.num_crops {c.num_crops} is more than the {cells} cells of G's "
                    f"last grid (global_size {c.global_size}); inference takes K_p distinct cells"
                )
    if "D" in cfg.modalities:
        if d.hrwe:
            if d.window_size <= 0 or d.image_size % d.window_size:
                raise ValueError(
                    f"dermoscopy.window_size {d.window_size} does not divide dermoscopy.image_size "
                    f"{d.image_size}; the image is cut into whole windows (e.g. 1024 / 256 = 4 x 4 windows)"
                )
            if d.backbone == "vit" and d.window_size % d.patch_size:
                raise ValueError(
                    f"dermoscopy.patch_size {d.patch_size} does not divide "
                    f"dermoscopy.window_size {d.window_size}"
                )
        elif d.backbone == "vit" and d.single_level_size % d.patch_size:
            raise ValueError(
                f"dermoscopy.patch_size {d.patch_size} does not divide dermoscopy.single_level_size "
                f"{d.single_level_size}"
            )
        swin = d.backbone != "vit"
        if swin:
            if d.msta and d.hrwe:
                raise ValueError(
                    f"dermoscopy.backbone {d.backbone}: MSTA is defined on the ViT window encoder's patch "
                    "tokens and the paper has no Swin row with it; set dermoscopy.msta: false"
                )
            if d.conv_stem:
                raise ValueError(
                    f"dermoscopy.backbone {d.backbone} has its own patch embedding; conv_stem: false"
                )
            side = d.window_size if d.hrwe else d.single_level_size
            if side % 32:
                raise ValueError(
                    f"dermoscopy.backbone {d.backbone}: input side {side} must be a multiple of 32"
                )
        elif d.embed_dim % d.num_heads:
            raise ValueError(
                f"dermoscopy.embed_dim {d.embed_dim} must be divisible by num_heads {d.num_heads}"
            )
        region_dim = d.region_dim or encoder_width(d)
        if d.hrwe and region_dim % d.region_heads:
            raise ValueError(
                f"the region encoder's width {region_dim} must be divisible by dermoscopy.region_heads "
                f"{d.region_heads}"
            )
