"""MILK10k (ISIC 2025): one clinical close-up, one dermoscopy image and metadata per lesion, 11 classes.

Layout of the official download (files found by name anywhere under ``root``)::

    MILK10k_Training_GroundTruth.csv   lesion_id + 11 one-hot columns (AKIEC ... VASC), 5,240 lesions
    MILK10k_Training_Metadata.csv      one row per image, two per lesion (image_type
                                       "clinical: close-up" / "dermoscopic"), 10,480 rows
    MILK10k_Training_Supplement.csv    optional: isic_id, diagnosis_full, diagnosis_confirm_type,
                                       invasion_thickness_interval (answers, never inputs)
    MILK10k_Training_Input/<lesion_id>/<isic_id>.jpg    (or inside one more MILK10k_Training_Input/)
    MILK10k_Test_Metadata.csv, MILK10k_Test_Input/      the benchmark: 479 lesions, no labels

One case per lesion (its group: the two images of a lesion never straddle two splits). The
``clinical: close-up`` image is the clinical modality, the ``dermoscopic`` one the dermoscopy modality.
Metadata: ``age_approx`` (5-year bins), ``sex``, ``skin_tone_class`` (0 very dark .. 5 very light),
``site``, each image's ``image_manipulation`` and, unless ``data.monet`` is false, the seven MONET
concept probabilities of each image (scores of an image-text model: image-derived, but shipped with the
benchmark's inputs), encoded ``linear`` between knots 0, 0.25, 0.5, 0.75, 1 (see docs/milk10k.md).

``milk10k`` is the training set (no official split: grouped k-fold); ``milk10k_benchmark`` the 479
benchmark lesions, all in the ``test`` split with an unknown diagnosis: predicted, never scored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from remixformer.data.cases import Case, CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.datasets.common import (
    cell,
    csv_line,
    find_one,
    modalities_of,
    parse_binary,
    parse_float,
    read_csv,
    require_dir,
)
from remixformer.keys import IGNORE_INDEX
from remixformer.schema import LINEAR, MetadataSchema, categorical, numeric
from remixformer.tasks import DIAG, TaskSpec

log = logging.getLogger(__name__)

NAME = "milk10k"
BENCHMARK = "milk10k_benchmark"
CLASSES = ("AKIEC", "BCC", "BEN_OTH", "BKL", "DF", "INF", "MAL_OTH", "MEL", "NV", "SCCKA", "VASC")
TASKS = (TaskSpec(DIAG, CLASSES),)

GROUND_TRUTH = "MILK10k_Training_GroundTruth.csv"
TRAINING_METADATA = "MILK10k_Training_Metadata.csv"
SUPPLEMENT = "MILK10k_Training_Supplement.csv"
TEST_METADATA = "MILK10k_Test_Metadata.csv"
BENCHMARK_SPLIT = "MILK10k benchmark; labels not public: predicted, never scored"
TRAINING_INPUT = "MILK10k_Training_Input"
TEST_INPUT = "MILK10k_Test_Input"

# image_type -> (modality letter, prefix of the per-image metadata fields)
IMAGE_TYPES = {"clinical: close-up": ("C", "clinical"), "dermoscopic": ("D", "dermoscopic")}
MONET = (
    "MONET_ulceration_crust",
    "MONET_hair",
    "MONET_vasculature_vessels",
    "MONET_erythema",
    "MONET_pigmented",
    "MONET_gel_water_drop_fluid_dermoscopy_liquid",
    "MONET_skin_markings_pen_ink_purple_pen",
)
LESION_FIELDS = ("age_approx", "sex", "skin_tone_class", "site")  # the same on both images of a lesion
METADATA_COLUMNS = ("lesion_id", "image_type", "isic_id", "image_manipulation", *LESION_FIELDS)
SUPPLEMENT_COLUMNS = ("isic_id", "diagnosis_full", "diagnosis_confirm_type", "invasion_thickness_interval")

AGE_BINS = tuple(float(a) for a in range(10, 90, 5))  # ages come in 5-year steps (5 .. 85)
AGE_RANGE = (0.0, 120.0)
SITES = ("head_neck_face", "trunk", "upper_extremity", "lower_extremity", "hand", "foot", "genital")
MANIPULATIONS = ("instrument only", "altered")
MONET_KNOTS = (0.0, 0.25, 0.5, 0.75, 1.0)

Images = dict[str, dict[str, tuple[int, pd.Series]]]  # lesion id -> image type -> (row index, row)


def monet_field(prefix: str, column: str) -> str:
    """Schema name of one image's MONET score, e.g. ``dermoscopic_MONET_hair``."""
    return f"{prefix}_{column}"


def build_schema(monet: bool = True) -> MetadataSchema:
    fields = [
        numeric("age_approx", AGE_BINS, description="years, in 5-year steps", value_range=AGE_RANGE),
        categorical("sex", ("female", "male")),
        numeric(
            "skin_tone_class",
            (0.5, 1.5, 2.5, 3.5, 4.5),
            labels=("0", "1", "2", "3", "4", "5"),
            description="0 very dark .. 5 very light",
            value_range=(0.0, 5.0),
        ),
        categorical("site", SITES),
    ]
    for _, prefix in IMAGE_TYPES.values():
        fields.append(
            categorical(
                f"{prefix}_image_manipulation", MANIPULATIONS, description=f"{prefix} image: manipulation"
            )
        )
    if monet:
        for _, prefix in IMAGE_TYPES.values():
            for column in MONET:
                fields.append(
                    numeric(
                        monet_field(prefix, column),
                        MONET_KNOTS,
                        value_range=(0.0, 1.0),
                        encoding=LINEAR,
                        description=f"MONET concept probability of the {prefix} image",
                    )
                )
    return MetadataSchema(fields, name=NAME)


SCHEMA = build_schema(monet=True)


def _input_dir(near: Iterable[Path], name: str) -> Path:
    """``<dir>/<name>`` (or ``<dir>/<name>/<name>``, as the archive unpacks) for the first ``dir`` that
    has it; else where the first would be (its image paths are then reported missing)."""
    near = list(dict.fromkeys(near))
    for base in near:
        folder = base / name
        if folder.is_dir():
            return folder / name if (folder / name).is_dir() else folder
    return near[0] / name


def _where(path: Path, row_index: int, column: str | None = None) -> str:
    return f"{NAME}: {path} line {csv_line(row_index)}" + (f", column {column!r}" if column else "")


def cramers_v(a: Iterable, b: Iterable) -> float:
    """Association of two categorical variables (0 none .. 1 one determines the other)."""
    table = pd.crosstab(pd.Series(list(a)), pd.Series(list(b))).to_numpy(dtype=float)
    if min(table.shape) < 2:
        return 0.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))


def _read_images(path: Path, monet: bool) -> Images:
    """lesion id -> image type -> (row index, row) of a metadata file, lesions in file order."""
    required = (*METADATA_COLUMNS, *(MONET if monet else ()))
    df = read_csv(path, NAME, required=required)
    lesions: Images = {}
    for r, row in df.iterrows():
        lesion = cell(row["lesion_id"])
        if lesion is None:
            raise ValueError(f"{_where(path, r, 'lesion_id')}: blank; every image needs its lesion id")
        if cell(row["isic_id"]) is None:
            raise ValueError(f"{_where(path, r, 'isic_id')}: blank; expected an image id like ISIC_0000000")
        kind = cell(row["image_type"])
        if kind not in IMAGE_TYPES:
            raise ValueError(
                f"{_where(path, r, 'image_type')}: unknown value {kind!r}; "
                f"expected one of {list(IMAGE_TYPES)}"
            )
        images = lesions.setdefault(lesion, {})
        if kind in images:
            raise ValueError(
                f"{_where(path, r, 'image_type')}: lesion {lesion!r} already has a {kind!r} image "
                f"(line {csv_line(images[kind][0])}); expected one image of each type per lesion"
            )
        images[kind] = (int(r), row)
    return lesions


def _metadata(path: Path, images: dict[str, tuple[int, pd.Series]], monet: bool) -> tuple[dict, list[str]]:
    """The case's raw metadata from its image rows, and the lesion fields its two rows disagree on."""
    meta: dict = {}
    disagree = []
    for f in LESION_FIELDS:
        values = []
        for r, row in images.values():
            raw = row[f]
            values.append(
                parse_float(raw, _where(path, r, f)) if f in ("age_approx", "skin_tone_class") else cell(raw)
            )
        if len(set(map(str, values))) > 1:
            disagree.append(f)
        meta[f] = values[0]
    for kind, (_, prefix) in IMAGE_TYPES.items():
        if kind not in images:
            continue
        r, row = images[kind]
        meta[f"{prefix}_image_manipulation"] = cell(row["image_manipulation"])
        if monet:
            for column in MONET:
                meta[monet_field(prefix, column)] = parse_float(row[column], _where(path, r, column))
    return meta, disagree


def _image_paths(lesion: str, images: dict[str, tuple[int, pd.Series]], folder: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"C": [], "D": []}
    for kind, (_, row) in images.items():
        out[IMAGE_TYPES[kind][0]].append(str(folder / lesion / f"{cell(row['isic_id'])}.jpg"))
    return out


def _labels(path: Path) -> dict[str, tuple[int, int]]:
    """lesion id -> (class index, row index) from the one-hot ground truth."""
    df = read_csv(path, NAME, required=("lesion_id", *CLASSES))
    out: dict[str, tuple[int, int]] = {}
    for r, row in df.iterrows():
        lesion = cell(row["lesion_id"])
        if lesion is None:
            raise ValueError(f"{_where(path, r, 'lesion_id')}: blank")
        if lesion in out:
            raise ValueError(
                f"{_where(path, r, 'lesion_id')}: lesion {lesion!r} already has a row "
                f"(line {csv_line(out[lesion][1])})"
            )
        vals = [parse_binary(row[c], _where(path, r, c)) for c in CLASSES]
        if sum(vals) != 1:
            raise ValueError(f"{_where(path, r)}: expected exactly one 1 among {list(CLASSES)}, got {vals}")
        out[lesion] = (vals.index(1), int(r))
    return out


def _answer_fields(
    path: Path, cases: list[Case], isic_lesion: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """What the Supplement holds (it is never read as an input), measured against the labels."""
    df = read_csv(path, NAME, required=SUPPLEMENT_COLUMNS)
    label = {c.case_id: c.targets[DIAG] for c in cases}
    lesion = [isic_lesion.get(str(i)) for i in df["isic_id"]]
    known = np.asarray([x is not None for x in lesion])
    notes = []
    if (~known).any():
        notes.append(f"{int((~known).sum())} row(s) of {path.name} name images that are not in the metadata")
    y = np.asarray([CLASSES[label[x]] if x is not None else "" for x in lesion], dtype=object)[known]
    sub = df[known]
    fine = sub["diagnosis_full"].fillna("")
    one_class = int(sum(len(set(y[fine.to_numpy() == v])) == 1 for v in fine.unique()))
    confirm = sub["diagnosis_confirm_type"].fillna("(blank)")
    thickness = sub["invasion_thickness_interval"].notna().to_numpy()
    ids = np.asarray([x for x in lesion if x is not None], dtype=object)
    by_lesion = pd.Series(y[thickness], index=ids[thickness]).groupby(level=0).first().value_counts()
    with_thickness = ", ".join(f"{c} {n}" for c, n in by_lesion.items()) or "none"
    fields = {
        "diagnosis_full": (
            f"the fine diagnosis, i.e. the label: {fine.nunique()} values, {one_class} of them within a "
            "single class"
        ),
        "diagnosis_confirm_type": (
            f"how the diagnosis was confirmed ({confirm.nunique()} values; Cramér's V "
            f"{cramers_v(confirm, y):.2f} with the diagnosis)"
        ),
        "invasion_thickness_interval": (
            f"tumour thickness, blank but for {int(thickness.sum())} images (lesions by class: "
            f"{with_thickness})"
        ),
    }
    return fields, notes


def _table(
    cfg: DataConfig,
    name: str,
    meta_path: Path,
    lesions: Images,
    folder: Path,
    labels: dict[str, tuple[int, int]] | None = None,
    gt_path: Path | None = None,
) -> CaseTable:
    order = list(lesions)
    schema = build_schema(cfg.monet)
    named_answers = sorted(set(cfg.include_leaky_fields) & set(SUPPLEMENT_COLUMNS[1:]))
    if named_answers:
        raise ValueError(
            f"{name}: include_leaky_fields names {named_answers}: the Supplement's fields are the answer "
            "(or reveal it) and are never inputs"
        )
    if cfg.include_leaky_fields:
        raise ValueError(
            f"{name}: include_leaky_fields names {sorted(cfg.include_leaky_fields)}; MILK10k has no leaky "
            "metadata field that may be included"
        )
    if labels is not None and gt_path is not None:
        missing = [k for k in labels if k not in lesions]
        if missing:
            r = labels[missing[0]][1]
            raise ValueError(
                f"{_where(gt_path, r, 'lesion_id')}: lesion {missing[0]!r} has no image in {meta_path.name} "
                f"({len(missing)} such lesion(s))"
            )
        extra = [k for k in order if k not in labels]
        if extra:
            r = next(iter(lesions[extra[0]].values()))[0]
            raise ValueError(
                f"{_where(meta_path, r, 'lesion_id')}: lesion {extra[0]!r} has no row in {gt_path.name} "
                f"({len(extra)} such lesion(s))"
            )
        order = list(labels)  # the ground truth's order
    cases = []
    disagreements: list[str] = []
    one_image: list[str] = []
    for lesion in order:
        images = lesions[lesion]
        meta, disagree = _metadata(meta_path, images, cfg.monet)
        if disagree:
            disagreements.append(f"{lesion} ({', '.join(disagree)})")
        if len(images) < len(IMAGE_TYPES):
            one_image.append(lesion)
        paths = _image_paths(lesion, images, folder)
        lines = " and ".join(str(csv_line(r)) for r, _ in images.values())
        cases.append(
            Case(
                case_id=lesion,
                group_id=lesion,
                targets={DIAG: labels[lesion][0] if labels is not None else IGNORE_INDEX},
                clinical=paths["C"],
                dermoscopy=paths["D"],
                metadata={k: v for k, v in meta.items() if k in schema},
                split=None if labels is not None else "test",
                source=f"{meta_path.name} line{'s' if len(images) > 1 else ''} {lines}",
            )
        )
    n_images = sum(len(c.clinical) + len(c.dermoscopy) for c in cases)
    n_found = sum(Path(p).is_file() for c in cases for p in (*c.clinical, *c.dermoscopy))
    notes = [
        f"{n_found} of {n_images} images referenced by {meta_path.name} were found under {folder}"
        + ("" if n_found else "; a metadata-only model (M) needs none")
    ]
    if not cfg.monet:
        notes.append("MONET concept scores left out of the metadata (data.monet=false)")
    if one_image:
        notes.append(
            f"{len(one_image)} lesion(s) have one image only (the other modality is absent): {one_image[:10]}"
        )
    if disagreements:
        notes.append(
            f"{len(disagreements)} lesion(s) whose two image rows disagree on a lesion field (the first row "
            f"is used): {disagreements[:10]}"
        )
    return CaseTable(
        name=name,
        cases=cases,
        tasks=TASKS,
        schema=schema,
        modalities=modalities_of(cases, schema),
        root=str(cfg.root),
        notes=notes,
        split_name="" if labels is not None else BENCHMARK_SPLIT,
    )


def load(cfg: DataConfig) -> CaseTable:
    """The 5,240 training lesions with their labels (grouped k-fold; no official split)."""
    root = require_dir(cfg.root, NAME)
    gt_path = find_one(root, GROUND_TRUTH, NAME, "ground truth")
    meta_path = find_one(root, TRAINING_METADATA, NAME, "training metadata")
    lesions = _read_images(meta_path, cfg.monet)
    folder = _input_dir([meta_path.parent, root], TRAINING_INPUT)
    table = _table(cfg, NAME, meta_path, lesions, folder, _labels(gt_path), gt_path)
    supplement = find_one(root, SUPPLEMENT, NAME, "supplement", required=False)
    if supplement is None:
        table.notes.append(f"{SUPPLEMENT} not found (optional; its fields are answers, never inputs)")
        return table
    isic_lesion = {
        str(cell(row["isic_id"])): lesion for lesion, images in lesions.items() for _, row in images.values()
    }
    answers, notes = _answer_fields(supplement, table.cases, isic_lesion)
    table.answer_fields = answers
    table.notes += notes
    return table


def load_benchmark(cfg: DataConfig) -> CaseTable:
    """The 479 benchmark lesions of ``MILK10k_Test_Metadata.csv``: inputs only, every label unknown."""
    root = require_dir(cfg.root, BENCHMARK)
    meta_path = find_one(root, TEST_METADATA, BENCHMARK, "benchmark metadata")
    folder = _input_dir([meta_path.parent, root], TEST_INPUT)
    return _table(cfg, BENCHMARK, meta_path, _read_images(meta_path, cfg.monet), folder)
