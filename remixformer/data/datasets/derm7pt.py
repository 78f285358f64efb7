"""Derm7pt (Kawahara et al. 2018): clinical + dermoscopy + metadata, official train/valid/test split.

Layout (``release_v0/``, ``root`` may be that folder or its parent)::

    meta/meta.csv                 1,011 cases
    meta/train_indexes.csv        column ``indexes``: 0-based rows of meta.csv (413)
    meta/valid_indexes.csv        (203)
    meta/test_indexes.csv         (395)
    images/<clinic>, images/<derm>  paths as written in meta.csv (letter case varies)

Tasks: ``diag`` (5 groups) and the seven checklist criteria ``pn, bwv, vs, pig, str, dag, rs`` with
the official repository's "group infrequent" classes. Metadata: ``sex``, ``location``, ``elevation``;
``management`` and ``level_of_diagnostic_difficulty`` leak the label and are only used when named.
In 9 cases the clinical photo is a copy of the dermoscopy image: those cases have no clinical image.
"""

from __future__ import annotations

import filecmp
import logging
import re
from pathlib import Path

from remixformer.data.cases import Case, CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.datasets.common import (
    cell,
    csv_line,
    modalities_of,
    read_csv,
    require_dir,
    restrict_metadata,
    split_schema,
)
from remixformer.schema import MetadataSchema, categorical
from remixformer.tasks import DIAG, TaskSpec

log = logging.getLogger(__name__)

NAME = "derm7pt"

# task -> (meta.csv column, classes, {class: raw values})
CRITERIA: dict[str, tuple[str, tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    DIAG: (
        "diagnosis",
        ("BCC", "NEV", "MEL", "MISC", "SK"),
        {
            "BCC": ("basal cell carcinoma",),
            "NEV": (
                "nevus",
                "blue nevus",
                "clark nevus",
                "combined nevus",
                "congenital nevus",
                "dermal nevus",
                "recurrent nevus",
                "reed or spitz nevus",
            ),
            "MEL": (
                "melanoma",
                "melanoma (in situ)",
                "melanoma (less than 0.76 mm)",
                "melanoma (0.76 to 1.5 mm)",
                "melanoma (more than 1.5 mm)",
                "melanoma metastasis",
            ),
            "MISC": ("dermatofibroma", "lentigo", "melanosis", "miscellaneous", "vascular lesion"),
            "SK": ("seborrheic keratosis",),
        },
    ),
    "pn": (
        "pigment_network",
        ("ABS", "TYP", "ATP"),
        {"ABS": ("absent",), "TYP": ("typical",), "ATP": ("atypical",)},
    ),
    "bwv": ("blue_whitish_veil", ("ABS", "PRS"), {"ABS": ("absent",), "PRS": ("present",)}),
    "vs": (
        "vascular_structures",
        ("ABS", "REG", "IR"),
        {
            "ABS": ("absent",),
            "REG": ("arborizing", "comma", "hairpin", "within regression", "wreath"),
            "IR": ("dotted", "linear irregular"),
        },
    ),
    "pig": (
        "pigmentation",
        ("ABS", "REG", "IR"),
        {
            "ABS": ("absent",),
            "REG": ("diffuse regular", "localized regular"),
            "IR": ("diffuse irregular", "localized irregular"),
        },
    ),
    "str": ("streaks", ("ABS", "REG", "IR"), {"ABS": ("absent",), "REG": ("regular",), "IR": ("irregular",)}),
    "dag": (
        "dots_and_globules",
        ("ABS", "REG", "IR"),
        {"ABS": ("absent",), "REG": ("regular",), "IR": ("irregular",)},
    ),
    "rs": (
        "regression_structures",
        ("ABS", "PRS"),
        {"ABS": ("absent",), "PRS": ("blue areas", "white areas", "combinations")},
    ),
}
TASK_NAMES = tuple(CRITERIA)  # diag, pn, bwv, vs, pig, str, dag, rs
TASKS = tuple(TaskSpec(name, classes) for name, (_, classes, _) in CRITERIA.items())

SCHEMA = MetadataSchema(
    [
        categorical("sex", ("female", "male")),
        categorical(
            "location",
            (
                "back",
                "lower limbs",
                "abdomen",
                "upper limbs",
                "chest",
                "head neck",
                "acral",
                "buttocks",
                "genital areas",
            ),
        ),
        categorical("elevation", ("flat", "palpable", "nodular")),
        categorical(
            "management",
            ("excision", "clinical follow up", "no further examination"),
            description="decision taken with the diagnosis in hand: leaks the label",
        ),
        categorical(
            "level_of_diagnostic_difficulty",
            ("low", "medium", "high"),
            description="graded with the diagnosis in hand: leaks the label",
        ),
    ],
    name=NAME,
)
LEAKY_FIELDS = ("management", "level_of_diagnostic_difficulty")

COLUMNS = (
    "case_num",
    "diagnosis",
    "seven_point_score",
    "pigment_network",
    "streaks",
    "pigmentation",
    "regression_structures",
    "dots_and_globules",
    "blue_whitish_veil",
    "vascular_structures",
    "level_of_diagnostic_difficulty",
    "elevation",
    "location",
    "sex",
    "management",
    "clinic",
    "derm",
    "case_id",
    "notes",
)
SPLIT_FILES = {"train": "train_indexes.csv", "val": "valid_indexes.csv", "test": "test_indexes.csv"}

# A note saying the clinical photo is missing / is the dermoscopy image.
_COPY_NOTE = re.compile(
    r"(no\s+clinic)"
    r"|(clinic\w*[^.;]{0,60}(same|copy|copied|duplicate|identical|missing|not\s+available|unavailable))"
    r"|((same|copy|copied|duplicate|identical)[^.;]{0,60}clinic)"
    r"|(derm\w*[^.;]{0,40}(used|copied|placed)[^.;]{0,40}clinic)",
    re.IGNORECASE,
)


def release_dir(root: str | Path) -> Path:
    """The folder holding ``meta/`` and ``images/`` (``root`` itself or ``root/release_v0``)."""
    base = require_dir(root, NAME)
    for cand in (base, base / "release_v0"):
        if (cand / "meta" / "meta.csv").is_file():
            return cand
    raise ValueError(
        f"{NAME}: no meta/meta.csv under {base} (expected release_v0/meta/meta.csv as the data set unpacks)"
    )


def _label(task: str, raw: str | None, where: str) -> int:
    column, classes, groups = CRITERIA[task]
    if raw is None:
        raise ValueError(f"{where}, column {column!r}: blank; expected one of {sorted(_raw_values(task))}")
    low = raw.strip().lower()
    for i, cls in enumerate(classes):
        if low in groups[cls]:
            return i
    raise ValueError(
        f"{where}, column {column!r}: unknown value {raw!r}; expected one of {sorted(_raw_values(task))}"
    )


def _raw_values(task: str) -> set[str]:
    return {v for vals in CRITERIA[task][2].values() for v in vals}


def _read_indexes(meta_dir: Path, n_rows: int) -> dict[int, str]:
    row_split: dict[int, str] = {}
    for split, fname in SPLIT_FILES.items():
        path = meta_dir / fname
        df = read_csv(path, NAME, required=["indexes"], what="the official split")
        for r, raw in zip(df.index, df["indexes"]):
            where = f"{NAME}: {path} line {csv_line(r)}, column 'indexes'"
            try:
                i = int(float(raw))
            except (TypeError, ValueError):
                raise ValueError(f"{where}: expected a 0-based row number of meta.csv, got {raw!r}") from None
            if not 0 <= i < n_rows:
                raise ValueError(f"{where}: row {i} is outside meta.csv's {n_rows} rows (0-based)")
            if i in row_split:
                raise ValueError(f"{where}: row {i} is already in the {row_split[i]} split")
            row_split[i] = split
    return row_split


def _is_copy(clinic: Path, derm: Path, clinic_raw: str, derm_raw: str, note: str | None) -> bool:
    """The clinical entry is the dermoscopy image (same path, same bytes, or the notes say so)."""
    if clinic_raw.strip().lower() == derm_raw.strip().lower():
        return True
    if note and _COPY_NOTE.search(note):
        return True
    try:
        if clinic.is_file() and derm.is_file() and clinic.stat().st_size == derm.stat().st_size:
            return filecmp.cmp(clinic, derm, shallow=False)
    except OSError:
        return False
    return False


def load(cfg: DataConfig) -> CaseTable:
    base = release_dir(cfg.root)
    meta_path = base / "meta" / "meta.csv"
    df = read_csv(meta_path, NAME, required=COLUMNS)
    row_split = _read_indexes(base / "meta", len(df))
    uncovered = [csv_line(i) for i in range(len(df)) if i not in row_split]
    schema, included = split_schema(SCHEMA, LEAKY_FIELDS, cfg.include_leaky_fields, NAME)

    images = base / "images"
    cases: list[Case] = []
    copies: list[str] = []
    for r, row in df.iterrows():
        line = csv_line(r)
        where = f"{NAME}: {meta_path} line {line}"
        case_id = cell(row["case_num"]) or str(r)
        targets = {task: _label(task, cell(row[CRITERIA[task][0]]), where) for task in TASK_NAMES}
        derm_raw, clinic_raw = cell(row["derm"]), cell(row["clinic"])
        derm = [str(images / derm_raw)] if derm_raw else []
        clinical = [str(images / clinic_raw)] if clinic_raw else []
        if (
            clinic_raw
            and derm_raw
            and _is_copy(images / clinic_raw, images / derm_raw, clinic_raw, derm_raw, cell(row["notes"]))
        ):
            copies.append(case_id)
            clinical = []
        metadata = {f: cell(row[f]) for f in SCHEMA.field_names}
        cases.append(
            Case(
                case_id=case_id,
                group_id=case_id,
                targets=targets,
                clinical=clinical,
                dermoscopy=derm,
                metadata=restrict_metadata(metadata, schema),
                split=row_split.get(r),
                source=f"meta.csv line {line}",
            )
        )
    notes = []
    if copies:
        notes.append(
            f"{len(copies)} case(s) whose clinical photo is a copy of the dermoscopy image are treated as "
            f"having no clinical image: {copies}"
        )
    if uncovered:
        notes.append(
            f"{len(uncovered)} meta.csv row(s) are in no official index file (lines {uncovered[:20]})"
        )
    return CaseTable(
        name=NAME,
        cases=cases,
        tasks=TASKS,
        schema=schema,
        modalities=modalities_of(cases, schema),
        root=str(base),
        leaky_fields_included=included,
        leaky_fields_available=list(LEAKY_FIELDS),
        notes=notes,
        split_name="official (meta/*_indexes.csv)",
    )
