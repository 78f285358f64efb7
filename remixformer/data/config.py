"""``DataConfig``: which data set, where, how to split it and how to read it.

Image sizes are not here: the model's config gives them (``clinical.image_size``,
``dermoscopy.image_size``). Build with ``remixformer.config.from_dict(DataConfig, {...})``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Literal

from remixformer.modalities import parse_modalities

# The one list of data-set names: the config's type, `data check --dataset`'s choices and the loaders of
# data/registry.py (a test checks that every name has a loader) all read it.
DatasetName = Literal[
    "synthetic",
    "derm7pt",
    "pad_ufes20",
    "isic2017",
    "isic2018",
    "isic2019",
    "milk10k",
    "milk10k_benchmark",
    "manifest",
]
DATASET_NAMES: tuple[str, ...] = typing.get_args(DatasetName)
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # decompression-bomb guard: 10,000 x 10,000
# Resizing to the model's square input costs about 3 x (longer side) x (model size) bytes, so a
# 1-pixel-wide image of many rows is a memory bomb within the pixel limit; no photo of a lesion is
# 20 times longer than wide.
MAX_ASPECT_RATIO = 20


@dataclass
class DataConfig:
    dataset: DatasetName = "synthetic"
    root: str = "data/synthetic"  # the folder as the data set unpacks (synthetic: generated here if empty)
    manifest: str | None = None  # manifest data set: the CSV (default <root>/manifest.csv)
    schema: str | None = None  # manifest data set: the schema JSON/YAML (default <root>/schema.json)
    protocol: Literal["auto", "official", "kfold"] = "auto"  # auto: official split where the set has one
    n_folds: int = 5
    fold: int = 0  # kfold: the test fold; validation is carved from the other folds
    val_fraction: float = 0.15  # share of the non-test cases held out for validation (grouped, stratified)
    seed: int = 0  # folds, validation carve-out, augmentation and remix draws
    include_leaky_fields: list[str] = field(default_factory=list)  # e.g. ["management"]; named in reports
    exclude_fields: list[str] = field(default_factory=list)  # metadata fields to leave out of the inputs
    augment: Literal["paper", "light", "flips", "none"] = "paper"  # training augmentation (transforms.py)
    remix: bool = True  # training only: borrow a missing image from a same-diagnosis training case
    remix_modalities: str = "CD"  # which missing modalities remix may borrow (letters of C, D, M)
    skip_bad_cases: bool = (
        False  # leave out cases with missing/unreadable images, with a warning listing them
    )
    # whose image files are checked (and, with skip_bad_cases, whose missing images drop a case): None =
    # the model's modalities; e.g. "C" keeps a metadata-only model on the cases that have a photo, the
    # same cases as the C and CM models it is compared with
    check_images: str | None = None
    verify_images: bool = False  # decode every image when loading (slow on big sets; `data check` does it)
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    num_workers: int = 0  # DataLoader workers
    cache_images: bool = False  # keep decoded images resized to the model size in memory (small CPU runs)
    attributes: bool = True  # ISIC 2017/2018: add the dermoscopic-attribute task when its labels are found
    # tasks to train and evaluate, by name (None: every task the data set has; "diag" is always kept). A
    # model should not be asked for what its inputs cannot show: on the synthetic set a photo-only model
    # trained on the seven dermoscopy attributes as well did not learn the diagnosis (docs/synthetic.md)
    tasks: list[str] | None = None
    monet: bool = True  # MILK10k: the seven MONET concept scores of each image as metadata
    synthetic_cases: int = 600  # synthetic: cases to generate when root holds no data set yet
    synthetic_seed: int = 0
    # feed the dermoscopy images to the clinical branch (a dermoscopy-only set, e.g. ISIC 2018, as C): the
    # supervised start of a clinical encoder when no ImageNet weights can be had (docs/results.md)
    dermoscopy_as_clinical: bool = False
    # synthetic: that many more test-only cases of new patients (a less noisy test split; the first
    # synthetic_cases cases do not change; docs/synthetic.md)
    synthetic_test_cases: int = 0

    def __post_init__(self) -> None:
        if self.tasks is not None:
            if len(set(self.tasks)) != len(self.tasks):
                raise ValueError(f"data.tasks names a task twice: {self.tasks}")
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {self.n_folds}")
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(
                f"fold must be in [0, {self.n_folds - 1}] for n_folds={self.n_folds}, got {self.fold}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_image_pixels <= 0:
            raise ValueError(f"max_image_pixels must be positive, got {self.max_image_pixels}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        self.remix_modalities = parse_modalities(self.remix_modalities, "remix_modalities", allow_empty=True)
        if self.synthetic_cases < 10:
            raise ValueError(f"synthetic_cases must be at least 10, got {self.synthetic_cases}")
        if self.synthetic_test_cases < 0:
            raise ValueError(f"synthetic_test_cases must be >= 0, got {self.synthetic_test_cases}")
