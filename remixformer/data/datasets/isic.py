"""ISIC 2017, ISIC 2018 (HAM10000) and ISIC 2019: dermoscopy (+ metadata) in the challenge layouts.

Files are found by name anywhere under ``root`` (the folders unpack with the challenge names); image
files are matched by their id (file stem), so ``ISIC_0000017_downsampled.jpg`` is found as written.

- ISIC 2017: ``ISIC-2017_{Training,Validation,Test_v2}_Part3_GroundTruth.csv`` (``image_id,melanoma,
  seborrheic_keratosis``; neither = nevus) give the official split; optional
  ``ISIC-2017_*_Data_metadata.csv`` (``image_id,age_approximate,sex``); task-2 superpixel labels
  ``ISIC_<id>_features.json`` (a 0/1 list per feature) give the multi-label ``attributes`` task.
- ISIC 2018: training labels and metadata from ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,dx_type,
  age,sex,localization``; groups = lesion), validation/test from ``ISIC2018_Task3_{Validation,Test}_
  GroundTruth.csv``; ``dx_type`` leaks the label. Task-2 masks ``ISIC_<id>_attribute_<name>.png`` give
  ``attributes``; their images are not task-3 images, so they join as extra cases with an unknown
  diagnosis (``-1``) in the split their folder names (Training/Validation/Test).
- ISIC 2019: ``ISIC_2019_Training_GroundTruth.csv`` (8 classes; ``UNK`` is never set) and
  ``ISIC_2019_Training_Metadata.csv``; no labelled test set, so k-fold only, grouped by ``lesion_id``
  where present (else by image).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image

from remixformer.data.cases import Case, CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.datasets.common import (
    cell,
    csv_line,
    find_files,
    find_one,
    index_images,
    modalities_of,
    parse_binary,
    parse_float,
    read_csv,
    require_dir,
    restrict_metadata,
    split_schema,
)
from remixformer.keys import IGNORE_INDEX
from remixformer.schema import AGE_BINS, AGE_RANGE, MetadataSchema, categorical, numeric
from remixformer.tasks import DIAG, MULTI, TaskSpec

log = logging.getLogger(__name__)

ATTRIBUTES = "attributes"
_NOT_CASE_IMAGES = ("_superpixels", "_segmentation", "_attribute_", "_mask")
_SEX = categorical("sex", ("male", "female"), aliases={"unknown": None})

# ----------------------------------------------------------------------------------------------------
# ISIC 2017
ISIC2017 = "isic2017"
ISIC2017_CLASSES = ("melanoma", "seborrheic_keratosis", "nevus")
ISIC2017_ATTRIBUTES = ("pigment_network", "negative_network", "streaks", "milia_like_cyst")
ISIC2017_SCHEMA = MetadataSchema(
    [numeric("age", AGE_BINS, aliases={"unknown": None}, description="years", value_range=AGE_RANGE), _SEX],
    name=ISIC2017,
)
_SPLIT_WORDS = {"train": "Training", "val": "Validation", "test": "Test"}


def _attribute_targets(labels: dict[str, list[float]], n: int, image_id: str) -> list[float]:
    return labels.get(image_id, [float("nan")] * n)


def _read_2017_attributes(root: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for path in find_files(root, "*_features.json"):
        image_id = path.name[: -len("_features.json")]
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{ISIC2017}: {path}: not readable JSON: {e}") from e
        row = []
        for attr in ISIC2017_ATTRIBUTES:
            if attr not in data:
                raise ValueError(
                    f"{ISIC2017}: {path}: missing key {attr!r}; expected keys {list(ISIC2017_ATTRIBUTES)}"
                )
            vals = data[attr]
            if not isinstance(vals, list) or any(v not in (0, 1) for v in vals):
                raise ValueError(f"{ISIC2017}: {path}, key {attr!r}: expected a list of 0/1 per superpixel")
            row.append(1.0 if any(v == 1 for v in vals) else 0.0)
        out[image_id] = row
    return out


def load_isic2017(cfg: DataConfig) -> CaseTable:
    root = require_dir(cfg.root, ISIC2017)
    images = index_images(root, exclude=_NOT_CASE_IMAGES)
    meta_files = find_files(root, "ISIC-2017_*_metadata.csv")
    meta: dict[str, dict] = {}
    for path in meta_files:
        df = read_csv(path, ISIC2017, required=["image_id"])
        for _, row in df.iterrows():
            meta[str(row["image_id"])] = {
                "age": cell(row.get("age_approximate")),
                "sex": cell(row.get("sex")),
            }
    schema = ISIC2017_SCHEMA if meta_files else MetadataSchema([], name=ISIC2017)
    attrs = _read_2017_attributes(root) if cfg.attributes else {}
    cases = []
    for split, word in _SPLIT_WORDS.items():
        gt = find_one(
            root,
            [f"ISIC-2017_{word}*_Part3_GroundTruth.csv", f"*{word}*Part3*GroundTruth*.csv"],
            ISIC2017,
            f"{word.lower()} ground truth",
        )
        df = read_csv(gt, ISIC2017, required=["image_id", "melanoma", "seborrheic_keratosis"])
        folder = gt.parent / gt.name.replace("_Part3_GroundTruth.csv", "_Data")
        for r, row in df.iterrows():
            where = f"{ISIC2017}: {gt} line {csv_line(r)}"
            image_id = cell(row["image_id"])
            mel = parse_binary(row["melanoma"], f"{where}, column 'melanoma'")
            sk = parse_binary(row["seborrheic_keratosis"], f"{where}, column 'seborrheic_keratosis'")
            if mel and sk:
                raise ValueError(
                    f"{where}: both melanoma and seborrheic_keratosis are 1; expected at most one"
                )
            label = 0 if mel else (1 if sk else 2)
            targets = {DIAG: label}
            if attrs:
                targets[ATTRIBUTES] = _attribute_targets(attrs, len(ISIC2017_ATTRIBUTES), image_id)
            path = images.get(image_id, folder / f"{image_id}.jpg")
            cases.append(
                Case(
                    case_id=image_id,
                    group_id=image_id,
                    targets=targets,
                    dermoscopy=[str(path)],
                    metadata=meta.get(image_id, {}),
                    split=split,
                    source=f"{gt.name} line {csv_line(r)}",
                )
            )
    tasks = [TaskSpec(DIAG, ISIC2017_CLASSES)]
    notes = []
    if attrs:
        tasks.append(TaskSpec(ATTRIBUTES, ISIC2017_ATTRIBUTES, kind=MULTI))
        labelled = sum(c.case_id in attrs for c in cases)
        notes.append(
            f"dermoscopic attributes (task-2 superpixel labels) found for {labelled} of {len(cases)} images"
        )
    return CaseTable(
        name=ISIC2017,
        cases=cases,
        tasks=tuple(tasks),
        schema=schema,
        modalities=modalities_of(cases, schema),
        root=str(root),
        notes=notes,
        split_name="official (Training/Validation/Test)",
    )


# ----------------------------------------------------------------------------------------------------
# ISIC 2018
ISIC2018 = "isic2018"
ISIC2018_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
ISIC2018_ATTRIBUTES = ("pigment_network", "negative_network", "streaks", "milia_like_cyst", "globules")
HAM_LOCALIZATIONS = (
    "back",
    "lower extremity",
    "trunk",
    "upper extremity",
    "abdomen",
    "face",
    "chest",
    "foot",
    "neck",
    "scalp",
    "hand",
    "ear",
    "genital",
    "acral",
)
ISIC2018_SCHEMA = MetadataSchema(
    [
        numeric("age", AGE_BINS, description="years", value_range=AGE_RANGE),
        _SEX,
        categorical("localization", HAM_LOCALIZATIONS, aliases={"unknown": None}),
        categorical(
            "dx_type",
            ("histo", "follow_up", "consensus", "confocal"),
            description="how the diagnosis was confirmed: leaks the label",
        ),
    ],
    name=ISIC2018,
)
ISIC2018_LEAKY = ("dx_type",)
_MASK = re.compile(r"^(ISIC_\d+)_attribute_(\w+?)\.png$", re.IGNORECASE)


def _read_2018_attributes(root: Path) -> dict[str, tuple[list[float], str | None]]:
    """image id -> (attribute vector, split from the folder name) from the task-2 masks."""
    found: dict[str, dict[str, float]] = {}
    split_of: dict[str, str | None] = {}
    masks = find_files(root, "ISIC_*_attribute_*.png")
    if masks:
        log.info("%s: reading %d task-2 attribute masks", ISIC2018, len(masks))
    for path in masks:
        m = _MASK.match(path.name)
        if not m or m.group(2).lower() not in ISIC2018_ATTRIBUTES:
            continue
        image_id, attr = m.group(1), m.group(2).lower()
        try:
            with Image.open(path) as im:
                present = (
                    im.getbbox() is not None if im.mode in ("L", "1", "P") else bool(np.asarray(im).any())
                )
        except OSError as e:
            raise ValueError(f"{ISIC2018}: {path}: unreadable attribute mask: {e}") from e
        found.setdefault(image_id, {})[attr] = 1.0 if present else 0.0
        folder = str(path.parent)
        split_of.setdefault(image_id, next((s for s, w in _SPLIT_WORDS.items() if w in folder), None))
    out = {}
    for image_id, d in found.items():
        out[image_id] = ([d.get(a, float("nan")) for a in ISIC2018_ATTRIBUTES], split_of[image_id])
    return out


def _onehot_label(row, classes: tuple[str, ...], where: str, unknown_col: str | None = None) -> int:
    vals = [parse_binary(row[c], f"{where}, column {c!r}") for c in classes]
    unk = parse_binary(row[unknown_col], f"{where}, column {unknown_col!r}") if unknown_col else 0
    if sum(vals) + unk != 1:
        cols = list(classes) + ([unknown_col] if unknown_col else [])
        raise ValueError(
            f"{where}: expected exactly one 1 among {cols}, got {vals + ([unk] if unknown_col else [])}"
        )
    return IGNORE_INDEX if unk else vals.index(1)


def load_isic2018(cfg: DataConfig) -> CaseTable:
    root = require_dir(cfg.root, ISIC2018)
    images = index_images(root, exclude=_NOT_CASE_IMAGES)
    schema, included = split_schema(ISIC2018_SCHEMA, ISIC2018_LEAKY, cfg.include_leaky_fields, ISIC2018)
    attrs = _read_2018_attributes(root) if cfg.attributes else {}
    cases: list[Case] = []
    notes: list[str] = []

    ham = find_one(
        root, ["HAM10000_metadata.csv", "HAM10000_metadata*"], ISIC2018, "training labels (HAM10000 metadata)"
    )
    df = read_csv(
        ham, ISIC2018, required=["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    )
    train_dir = root / "ISIC2018_Task3_Training_Input"
    dx_map = {c.lower(): i for i, c in enumerate(ISIC2018_CLASSES)}
    for r, row in df.iterrows():
        where = f"{ISIC2018}: {ham} line {csv_line(r)}"
        image_id = cell(row["image_id"])
        dx = (cell(row["dx"]) or "").lower()
        if dx not in dx_map:
            raise ValueError(
                f"{where}, column 'dx': unknown value {row['dx']!r}; expected one of {sorted(dx_map)}"
            )
        lesion = cell(row["lesion_id"]) or image_id
        metadata = {
            "age": parse_float(row["age"], f"{where}, column 'age'"),
            "sex": cell(row["sex"]),
            "localization": cell(row["localization"]),
            "dx_type": cell(row["dx_type"]),
        }
        targets = {DIAG: dx_map[dx]}
        cases.append(
            Case(
                case_id=image_id,
                group_id=lesion,
                targets=targets,
                dermoscopy=[str(images.get(image_id, train_dir / f"{image_id}.jpg"))],
                metadata=restrict_metadata(metadata, schema),
                split="train",
                source=f"{ham.name} line {csv_line(r)}",
            )
        )
    for split, word in (("val", "Validation"), ("test", "Test")):
        gt = find_one(
            root,
            [f"ISIC2018_Task3_{word}_GroundTruth.csv", f"*Task3*{word}*GroundTruth*.csv"],
            ISIC2018,
            f"{word.lower()} ground truth",
            required=False,
        )
        if gt is None:
            notes.append(
                f"no ISIC2018_Task3_{word}_GroundTruth.csv found: the official {split} split is empty"
            )
            continue
        gdf = read_csv(gt, ISIC2018, required=["image", *ISIC2018_CLASSES])
        folder = root / f"ISIC2018_Task3_{word}_Input"
        for r, row in gdf.iterrows():
            where = f"{ISIC2018}: {gt} line {csv_line(r)}"
            image_id = cell(row["image"])
            cases.append(
                Case(
                    case_id=image_id,
                    group_id=image_id,
                    targets={DIAG: _onehot_label(row, ISIC2018_CLASSES, where)},
                    dermoscopy=[str(images.get(image_id, folder / f"{image_id}.jpg"))],
                    split=split,
                    source=f"{gt.name} line {csv_line(r)}",
                )
            )
    tasks = [TaskSpec(DIAG, ISIC2018_CLASSES)]
    if attrs:
        tasks.append(TaskSpec(ATTRIBUTES, ISIC2018_ATTRIBUTES, kind=MULTI))
        nan_row = [float("nan")] * len(ISIC2018_ATTRIBUTES)
        by_id = {c.case_id: c for c in cases}
        extra = 0
        for image_id, (vec, split) in sorted(attrs.items()):
            if image_id in by_id:
                by_id[image_id].targets[ATTRIBUTES] = vec
                continue
            extra += 1
            folder = root / f"ISIC2018_Task1-2_{_SPLIT_WORDS.get(split or 'train', 'Training')}_Input"
            cases.append(
                Case(
                    case_id=image_id,
                    group_id=image_id,
                    targets={DIAG: IGNORE_INDEX, ATTRIBUTES: vec},
                    dermoscopy=[str(images.get(image_id, folder / f"{image_id}.jpg"))],
                    split=split or "train",
                    source="task-2 attribute masks",
                )
            )
        for c in cases:
            c.targets.setdefault(ATTRIBUTES, nan_row)
        notes.append(
            f"dermoscopic attributes (task-2 masks) for {len(attrs)} images; {extra} of them are not "
            "task-3 images and join as cases with an unknown diagnosis"
        )
    if not any(c.split == "test" for c in cases) or not any(c.split == "val" for c in cases):
        for c in cases:  # without the official validation/test files there is no official split
            c.split = None
    notes.append(
        "metadata (age, sex, localization) exists for the HAM10000 training images only; "
        "validation and test cases have no metadata"
    )
    return CaseTable(
        name=ISIC2018,
        cases=cases,
        tasks=tuple(tasks),
        schema=schema,
        modalities=modalities_of(cases, schema),
        root=str(root),
        leaky_fields_included=included,
        leaky_fields_available=list(ISIC2018_LEAKY),
        notes=notes,
        split_name="official (HAM10000 train / task-3 validation / task-3 test)",
    )


# ----------------------------------------------------------------------------------------------------
# ISIC 2019
ISIC2019 = "isic2019"
ISIC2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
ISIC2019_SITES = (
    "anterior torso",
    "upper extremity",
    "posterior torso",
    "lower extremity",
    "lateral torso",
    "head/neck",
    "palms/soles",
    "oral/genital",
)
ISIC2019_SCHEMA = MetadataSchema(
    [
        numeric(
            "age_approx",
            AGE_BINS,
            description="years (approximate, multiples of 5)",
            value_range=AGE_RANGE,
        ),
        categorical("anatom_site_general", ISIC2019_SITES),
        _SEX,
    ],
    name=ISIC2019,
)


def load_isic2019(cfg: DataConfig) -> CaseTable:
    root = require_dir(cfg.root, ISIC2019)
    images = index_images(root, exclude=_NOT_CASE_IMAGES)
    gt = find_one(root, "ISIC_2019_Training_GroundTruth.csv", ISIC2019, "training ground truth")
    df = read_csv(gt, ISIC2019, required=["image", *ISIC2019_CLASSES])
    meta_path = find_one(
        root, "ISIC_2019_Training_Metadata.csv", ISIC2019, "training metadata", required=False
    )
    meta: dict[str, dict] = {}
    notes = []
    if meta_path is not None:
        mdf = read_csv(
            meta_path, ISIC2019, required=["image", "age_approx", "anatom_site_general", "lesion_id", "sex"]
        )
        for r, row in mdf.iterrows():
            where = f"{ISIC2019}: {meta_path} line {csv_line(r)}"
            meta[str(row["image"])] = {
                "age_approx": parse_float(row["age_approx"], f"{where}, column 'age_approx'"),
                "anatom_site_general": cell(row["anatom_site_general"]),
                "sex": cell(row["sex"]),
                "lesion_id": cell(row["lesion_id"]),
            }
    else:
        notes.append("ISIC_2019_Training_Metadata.csv not found: no metadata, and folds are grouped by image")
    schema = ISIC2019_SCHEMA if meta_path is not None else MetadataSchema([], name=ISIC2019)
    folder = root / "ISIC_2019_Training_Input"
    unk_col = "UNK" if "UNK" in df.columns else None
    cases = []
    for r, row in df.iterrows():
        where = f"{ISIC2019}: {gt} line {csv_line(r)}"
        image_id = cell(row["image"])
        m = meta.get(image_id, {})
        lesion = m.pop("lesion_id", None) if m else None
        cases.append(
            Case(
                case_id=image_id,
                group_id=lesion or image_id,
                targets={DIAG: _onehot_label(row, ISIC2019_CLASSES, where, unk_col)},
                dermoscopy=[str(images.get(image_id, folder / f"{image_id}.jpg"))],
                metadata=m,
                source=f"{gt.name} line {csv_line(r)}",
            )
        )
    if meta_path is not None:
        missing = sum(c.case_id not in meta for c in cases)
        if missing:
            notes.append(f"{missing} ground-truth images have no row in {meta_path.name}")
        grouped = sum(c.group_id != c.case_id for c in cases)
        notes.append(
            f"{grouped} of {len(cases)} images have a lesion_id (folds grouped by it); the rest are grouped "
            "by image"
        )
    n_down = sum(c.case_id.endswith("_downsampled") for c in cases)
    if n_down:
        notes.append(f"{n_down} image ids end in '_downsampled' (file names keep the suffix)")
    return CaseTable(
        name=ISIC2019,
        cases=cases,
        tasks=(TaskSpec(DIAG, ISIC2019_CLASSES),),
        schema=schema,
        modalities=modalities_of(cases, schema),
        root=str(root),
        notes=notes,
    )
