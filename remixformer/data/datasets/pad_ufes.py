"""PAD-UFES-20 (Pacheco et al. 2020): smartphone clinical photos + metadata, 6 classes, no official split.

Layout: ``metadata.csv`` (2,298 rows, 26 columns) and the PNG images anywhere under ``root`` (the
release unpacks them into ``images/imgs_part_1..3/``); ``img_id`` names the file.
Groups are patients (``patient_id``): several images per lesion and several lesions per patient exist,
and ``lesion_id`` numbers repeat across patients, so only the patient is a safe group.
``biopsed`` is a proxy for the label (every BCC, MEL and SCC was biopsied): excluded unless named.
Note: most fields are blank for cases that were not biopsied, so the *blank pattern* of those fields
also carries label information; ``data check`` measures and reports it.
"""

from __future__ import annotations

import logging

from remixformer.data.cases import Case, CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.datasets.common import (
    cell,
    csv_line,
    find_one,
    index_images,
    modalities_of,
    parse_bool,
    parse_float,
    read_csv,
    require_dir,
    restrict_metadata,
    split_schema,
)
from remixformer.schema import AGE_BINS, AGE_RANGE, MetadataSchema, boolean, categorical, numeric
from remixformer.tasks import DIAG, TaskSpec

log = logging.getLogger(__name__)

NAME = "pad_ufes20"
CLASSES = ("ACK", "BCC", "MEL", "NEV", "SCC", "SEK")
TASKS = (TaskSpec(DIAG, CLASSES),)

COLUMNS = (
    "patient_id",
    "lesion_id",
    "smoke",
    "drink",
    "background_father",
    "background_mother",
    "age",
    "pesticide",
    "gender",
    "skin_cancer_history",
    "cancer_history",
    "has_piped_water",
    "has_sewage_system",
    "fitspatrick",
    "region",
    "diameter_1",
    "diameter_2",
    "diagnostic",
    "itch",
    "grew",
    "hurt",
    "changed",
    "bleed",
    "elevation",
    "img_id",
    "biopsed",
)
BOOL_FIELDS = (
    "smoke",
    "drink",
    "pesticide",
    "skin_cancer_history",
    "cancer_history",
    "has_piped_water",
    "has_sewage_system",
    "itch",
    "grew",
    "hurt",
    "changed",
    "bleed",
    "elevation",
    "biopsed",
)
FLOAT_FIELDS = ("age", "fitspatrick", "diameter_1", "diameter_2")
COUNTRIES = (
    "POMERANIA",
    "GERMANY",
    "ITALY",
    "BRAZIL",
    "NETHERLANDS",
    "PORTUGAL",
    "POLAND",
    "CZECH",
    "AUSTRIA",
    "SPAIN",
    "ISRAEL",
    "NORWAY",
    "FRANCE",
)
REGIONS = (
    "FACE",
    "FOREARM",
    "CHEST",
    "BACK",
    "ARM",
    "NOSE",
    "HAND",
    "NECK",
    "THIGH",
    "EAR",
    "ABDOMEN",
    "LIP",
    "SCALP",
    "FOOT",
)
DIAMETER_BINS = (5.0, 10.0, 15.0, 20.0)  # mm: <5, 5-10, 10-15, 15-20, >=20
DIAMETER_RANGE = (0.0, 500.0)  # mm
FITSPATRICK_BINS = (1.5, 2.5, 3.5, 4.5, 5.5)  # skin type I..VI (stored as 1.0 .. 6.0)
_UNK = {"UNK": None}

SCHEMA = MetadataSchema(
    [
        boolean("smoke"),
        boolean("drink"),
        categorical("background_father", COUNTRIES, aliases={"BRASIL": "BRAZIL", **_UNK}),
        categorical("background_mother", COUNTRIES, aliases={"BRASIL": "BRAZIL", **_UNK}),
        numeric("age", AGE_BINS, description="years", value_range=AGE_RANGE),
        boolean("pesticide"),
        categorical("gender", ("FEMALE", "MALE")),
        boolean("skin_cancer_history"),
        boolean("cancer_history"),
        boolean("has_piped_water"),
        boolean("has_sewage_system"),
        numeric(
            "fitspatrick",
            FITSPATRICK_BINS,
            labels=("1", "2", "3", "4", "5", "6"),
            description="Fitzpatrick skin type",
            value_range=(1.0, 6.0),
        ),
        categorical("region", REGIONS),
        numeric("diameter_1", DIAMETER_BINS, description="mm", value_range=DIAMETER_RANGE),
        numeric("diameter_2", DIAMETER_BINS, description="mm", value_range=DIAMETER_RANGE),
        boolean("itch", aliases=_UNK),
        boolean("grew", aliases=_UNK),
        boolean("hurt", aliases=_UNK),
        boolean("changed", aliases=_UNK),
        boolean("bleed", aliases=_UNK),
        boolean("elevation", aliases=_UNK),
        boolean("biopsed", description="biopsy done: a proxy for the label"),
    ],
    name=NAME,
)
LEAKY_FIELDS = ("biopsed",)


def _typed(row, field: str, where: str):
    raw = row[field]
    col = f"{where}, column {field!r}"
    if field in BOOL_FIELDS:
        return parse_bool(raw, col)
    if field in FLOAT_FIELDS:
        return parse_float(raw, col)
    return cell(raw)


def load(cfg: DataConfig) -> CaseTable:
    root = require_dir(cfg.root, NAME)
    meta_path = find_one(root, "metadata.csv", NAME, "metadata file")
    df = read_csv(meta_path, NAME, required=COLUMNS)
    schema, included = split_schema(SCHEMA, LEAKY_FIELDS, cfg.include_leaky_fields, NAME)
    images = index_images(root)
    default_dir = meta_path.parent / "images"
    cases = []
    for r, row in df.iterrows():
        line = csv_line(r)
        where = f"{NAME}: {meta_path} line {line}"
        img_id = cell(row["img_id"])
        if img_id is None:
            raise ValueError(
                f"{where}, column 'img_id': blank; expected an image file name like PAT_46_881_939.png"
            )
        diag = cell(row["diagnostic"])
        if diag not in CLASSES:
            raise ValueError(
                f"{where}, column 'diagnostic': unknown value {diag!r}; expected one of {list(CLASSES)}"
            )
        patient = cell(row["patient_id"])
        if patient is None:
            raise ValueError(
                f"{where}, column 'patient_id': blank; every image needs its patient for grouped folds"
            )
        stem = img_id.rsplit(".", 1)[0]
        path = images.get(stem, default_dir / img_id)
        metadata = {f: _typed(row, f, where) for f in SCHEMA.field_names}
        cases.append(
            Case(
                case_id=stem,
                group_id=patient,
                targets={DIAG: CLASSES.index(diag)},
                clinical=[str(path)],
                metadata=restrict_metadata(metadata, schema),
                source=f"metadata.csv line {line}",
            )
        )
    n_found = sum(bool(c.clinical[0]) and (c.case_id in images) for c in cases)
    notes = [f"{n_found} of {len(cases)} images referenced by metadata.csv were found under {root}"]
    return CaseTable(
        name=NAME,
        cases=cases,
        tasks=TASKS,
        schema=schema,
        modalities=modalities_of(cases, schema),
        root=str(root),
        leaky_fields_included=included,
        leaky_fields_available=list(LEAKY_FIELDS),
        notes=notes,
    )
