"""Fixture writers: tiny data sets in the exact official layouts, written into tmp folders.

Each writer returns the root folder and documents the counts the tests assert. Tests reach the
writers and their constants through the ``layouts`` fixture (importing ``conftest`` by name would
clash with the other test folders' conftest modules).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image


def write_image(path: Path, size=(24, 16), seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode == "RGBA":
        img = img.convert("RGBA")
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    img.save(path, format=fmt)
    return path


# --------------------------------------------------------------------------------------------------
# Derm7pt: 30 cases; official split 12 / 8 / 10; 9 cases whose clinical photo is the dermoscopy image
# (3 with the same path, 3 byte-identical copies, 3 only said so in `notes`).
DERM7PT_COLUMNS = [
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
]
DERM7PT_DIAG = [
    "basal cell carcinoma",
    "clark nevus",
    "melanoma (in situ)",
    "dermatofibroma",
    "seborrheic keratosis",
    "reed or spitz nevus",
    "melanoma",
    "lentigo",
    "blue nevus",
    "melanoma metastasis",
]
DERM7PT_DIAG_GROUP = ["BCC", "NEV", "MEL", "MISC", "SK", "NEV", "MEL", "MISC", "NEV", "MEL"]
DERM7PT_COPIES = {"same_path": [2, 5, 8], "same_bytes": [11, 14, 17], "notes": [20, 23, 26]}


def write_derm7pt(root: Path) -> Path:
    base = root / "release_v0"
    rows = []
    for i in range(30):
        folder = ["Aal", "Fbl", "NEL"][i % 3]
        derm = f"{folder}/D{i:03d}.jpg"
        clinic = f"{folder}/{'c' if i % 2 else 'C'}{i:03d}.JPG"  # letter case varies, as in the release
        notes = ""
        write_image(base / "images" / derm, seed=i)
        if i in DERM7PT_COPIES["same_path"]:
            clinic = derm
        elif i in DERM7PT_COPIES["same_bytes"]:
            shutil.copyfile(base / "images" / derm, base / "images" / clinic)
        else:
            write_image(base / "images" / clinic, seed=1000 + i)
            if i in DERM7PT_COPIES["notes"]:
                notes = "clinical image is the same as the dermoscopic image"
        rows.append(
            {
                "case_num": i + 1,
                "diagnosis": DERM7PT_DIAG[i % 10],
                "seven_point_score": i % 5,
                "pigment_network": ["absent", "typical", "atypical"][i % 3],
                "streaks": ["absent", "regular", "irregular"][i % 3],
                "pigmentation": ["absent", "diffuse regular", "localized irregular", "diffuse irregular"][
                    i % 4
                ],
                "regression_structures": ["absent", "blue areas", "white areas", "combinations"][i % 4],
                "dots_and_globules": ["absent", "regular", "irregular"][(i + 1) % 3],
                "blue_whitish_veil": ["absent", "present"][i % 2],
                "vascular_structures": ["absent", "arborizing", "dotted", "linear irregular", "comma"][i % 5],
                "level_of_diagnostic_difficulty": ["low", "medium", "high"][i % 3],
                "elevation": ["flat", "palpable", "nodular"][i % 3],
                "location": ["back", "lower limbs", "head neck", "acral"][i % 4],
                "sex": ["female", "male"][i % 2],
                "management": ["excision", "clinical follow up", "no further examination"][i % 3],
                "clinic": clinic,
                "derm": derm,
                "case_id": f"{folder}{i:03d}",
                "notes": notes,
            }
        )
    (base / "meta").mkdir(parents=True)
    pd.DataFrame(rows, columns=DERM7PT_COLUMNS).to_csv(base / "meta" / "meta.csv", index=False)
    order = np.random.default_rng(0).permutation(30)
    for name, idx in (("train", order[:12]), ("valid", order[12:20]), ("test", order[20:])):
        pd.DataFrame({"indexes": sorted(idx.tolist())}).to_csv(
            base / "meta" / f"{name}_indexes.csv", index=False
        )
    return root


# --------------------------------------------------------------------------------------------------
# PAD-UFES-20: 24 images of 8 patients (3 each, two lesions each); classes ACK 7, BCC 4, MEL 2, NEV 4,
# SCC 2, SEK 5; 12 non-biopsied rows with the patient fields blank; images split over imgs_part_1/2
# (RGBA, as in the release); PAT_7's two images missing. Row 5 has background_father BRASIL (alias)
# and row 6 CHINA (outside the schema).
PAD_COLUMNS = [
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
]
PAD_DIAG = ["ACK", "BCC", "ACK", "MEL", "NEV", "SCC", "SEK", "ACK"]  # per patient; 3 images each
PAD_MISSING = ["PAT_7_71_2.png", "PAT_7_70_1.png"]


def write_pad(root: Path) -> Path:
    rows = []
    for p in range(8):
        for k in range(3):
            diag = PAD_DIAG[p] if k < 2 else ["NEV", "SEK", "ACK", "SEK", "SEK", "BCC", "BCC", "NEV"][p]
            biopsed = diag in ("BCC", "MEL", "SCC")
            lesion = 70 + (k >= 2)  # lesion ids repeat across patients, as in the release
            img = f"PAT_{p}_{lesion}_{k}.png"
            r = len(rows)
            row = {c: "" for c in PAD_COLUMNS}
            row.update(
                patient_id=f"PAT_{p}",
                lesion_id=lesion,
                age=20 + 3 * r,
                region=["FACE", "ARM", "NOSE"][k],
                diagnostic=diag,
                itch=["True", "False", "UNK"][r % 3],
                grew="False",
                hurt="False",
                changed="True",
                bleed="UNK",
                elevation="False",
                img_id=img,
                biopsed=str(biopsed),
            )
            if biopsed or p < 2:  # patient fields filled for biopsied lesions (and two other patients)
                row.update(
                    smoke="False",
                    drink="True",
                    background_father="POMERANIA",
                    background_mother="GERMANY",
                    pesticide="False",
                    gender="FEMALE" if p % 2 else "MALE",
                    skin_cancer_history="True",
                    cancer_history="False",
                    has_piped_water="True",
                    has_sewage_system="True",
                    fitspatrick="2.0",
                    diameter_1="12.0",
                    diameter_2="4.5",
                )
            rows.append(row)
    rows[5]["background_father"] = "BRASIL"
    rows[6]["background_father"] = "CHINA"
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=PAD_COLUMNS).to_csv(root / "metadata.csv", index=False)
    for r, row in enumerate(rows):
        if row["img_id"] not in PAD_MISSING:
            part = "imgs_part_1" if r < 12 else "imgs_part_2"
            write_image(root / "images" / part / row["img_id"], seed=r, mode="RGBA")
    return root


# --------------------------------------------------------------------------------------------------
# ISIC 2017: train 6 (MEL 2, SK 2, NV 2) / val 3 / test 3; metadata for train; task-2 JSON for 4 train images.
def write_isic2017(root: Path) -> Path:
    splits = {
        "Training": (6, "ISIC-2017_Training"),
        "Validation": (3, "ISIC-2017_Validation"),
        "Test": (3, "ISIC-2017_Test_v2"),
    }
    n = 0
    for word, (count, prefix) in splits.items():
        rows = []
        for k in range(count):
            image_id = f"ISIC_{n:07d}"
            label = k % 3  # melanoma, seborrheic keratosis, nevus
            rows.append(
                {
                    "image_id": image_id,
                    "melanoma": float(label == 0),
                    "seborrheic_keratosis": float(label == 1),
                }
            )
            write_image(root / f"{prefix}_Data" / f"{image_id}.jpg", seed=n)
            write_image(root / f"{prefix}_Data" / f"{image_id}_superpixels.png", seed=n)  # not a case image
            if word == "Training" and k < 4:
                feats = {
                    "pigment_network": [0, k % 2],
                    "negative_network": [0, 0],
                    "milia_like_cyst": [int(k == 3), 0],
                    "streaks": [0, 0],
                }
                gt2 = root / "ISIC-2017_Training_Part2_GroundTruth" / f"{image_id}_features.json"
                gt2.parent.mkdir(parents=True, exist_ok=True)
                gt2.write_text(json.dumps(feats))
            n += 1
        pd.DataFrame(rows).to_csv(root / f"{prefix}_Part3_GroundTruth.csv", index=False)
    meta = pd.DataFrame(
        {
            "image_id": [f"ISIC_{i:07d}" for i in range(6)],
            "age_approximate": ["55", "unknown", "30", "70", "45", "60"],
            "sex": ["male", "female", "unknown", "male", "female", "male"],
        }
    )
    meta.to_csv(root / "ISIC-2017_Training_Data_metadata.csv", index=False)
    return root


# --------------------------------------------------------------------------------------------------
# ISIC 2018: HAM10000 10 rows (7 lesions: 3 rows repeat a lesion), validation 3, test 4; task-2 masks for
# one HAM image and two task-1/2 images (which join as cases with an unknown diagnosis).
HAM_ROWS = [
    ("HAM_0000001", "ISIC_0024306", "nv", "follow_up"),
    ("HAM_0000001", "ISIC_0024307", "nv", "follow_up"),
    ("HAM_0000002", "ISIC_0024308", "mel", "histo"),
    ("HAM_0000002", "ISIC_0024309", "mel", "histo"),
    ("HAM_0000002", "ISIC_0024310", "mel", "histo"),
    ("HAM_0000003", "ISIC_0024311", "bkl", "consensus"),
    ("HAM_0000004", "ISIC_0024312", "bcc", "histo"),
    ("HAM_0000005", "ISIC_0024313", "akiec", "histo"),
    ("HAM_0000006", "ISIC_0024314", "df", "confocal"),
    ("HAM_0000007", "ISIC_0024315", "vasc", "histo"),
]


def write_isic2018(root: Path) -> Path:
    ham = pd.DataFrame(
        [
            {
                "lesion_id": l,
                "image_id": i,
                "dx": dx,
                "dx_type": t,
                "age": ["45.0", "", "80.0"][n % 3],
                "sex": ["male", "female", "unknown"][n % 3],
                "localization": ["back", "unknown", "face"][n % 3],
            }
            for n, (l, i, dx, t) in enumerate(HAM_ROWS)
        ]
    )
    root.mkdir(parents=True, exist_ok=True)
    ham.to_csv(root / "HAM10000_metadata.csv", index=False)
    for n, (_, i, _, _) in enumerate(HAM_ROWS):
        write_image(root / "ISIC2018_Task3_Training_Input" / f"{i}.jpg", seed=n)
    classes = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    for word, ids, labels in (
        ("Validation", [34321, 34322, 34323], [1, 0, 4]),
        ("Test", [34524, 34525, 34526, 34527], [1, 1, 5, 6]),
    ):
        rows = []
        for image, lab in zip(ids, labels):
            rows.append({"image": f"ISIC_{image:07d}", **{c: float(j == lab) for j, c in enumerate(classes)}})
            write_image(root / f"ISIC2018_Task3_{word}_Input" / f"ISIC_{image:07d}.jpg", seed=image)
        pd.DataFrame(rows).to_csv(root / f"ISIC2018_Task3_{word}_GroundTruth.csv", index=False)
    masks = root / "ISIC2018_Task2_Training_GroundTruth_v3"
    masks.mkdir()
    attrs = ["globules", "milia_like_cyst", "negative_network", "pigment_network", "streaks"]
    for image, present in (
        ("ISIC_0024306", {"pigment_network"}),
        ("ISIC_0000000", {"globules", "streaks"}),
        ("ISIC_0000001", set()),
    ):
        for a in attrs:
            m = np.zeros((8, 8), dtype=np.uint8)
            if a in present:
                m[2:4, 2:4] = 255
            Image.fromarray(m).save(masks / f"{image}_attribute_{a}.png")
        if image.startswith("ISIC_00000"):
            write_image(root / "ISIC2018_Task1-2_Training_Input" / f"{image}.jpg", seed=7)
    return root


# --------------------------------------------------------------------------------------------------
# ISIC 2019: 12 images, MEL 3, NV 4, BCC 1, AK 1, BKL 1, DF 1, SCC 1 (VASC 0, UNK 0); 3 `_downsampled` ids
# without lesion_id; lesions: IL_1 x3, IL_2 x2, the rest single.
ISIC2019_CLASSES = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
ISIC2019_ROWS = [
    ("ISIC_0000000", "NV", "IL_1"),
    ("ISIC_0000001", "NV", "IL_1"),
    ("ISIC_0000002", "NV", "IL_1"),
    ("ISIC_0000003_downsampled", "MEL", ""),
    ("ISIC_0000004_downsampled", "MEL", ""),
    ("ISIC_0000005_downsampled", "NV", ""),
    ("ISIC_0000006", "MEL", "IL_2"),
    ("ISIC_0000007", "BCC", "IL_2"),
    ("ISIC_0000008", "AK", "IL_3"),
    ("ISIC_0000009", "BKL", "IL_4"),
    ("ISIC_0000010", "DF", "IL_5"),
    ("ISIC_0000011", "SCC", "IL_6"),
]


def write_isic2019(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    gt = [{"image": i, **{c: int(c == dx) for c in ISIC2019_CLASSES}} for i, dx, _ in ISIC2019_ROWS]
    pd.DataFrame(gt).to_csv(root / "ISIC_2019_Training_GroundTruth.csv", index=False)
    meta = [
        {
            "image": i,
            "age_approx": ["55.0", "", "85.0"][n % 3],
            "anatom_site_general": ["anterior torso", "head/neck", ""][n % 3],
            "lesion_id": lesion,
            "sex": ["male", "female", ""][n % 3],
        }
        for n, (i, _, lesion) in enumerate(ISIC2019_ROWS)
    ]
    pd.DataFrame(meta).to_csv(root / "ISIC_2019_Training_Metadata.csv", index=False)
    for n, (i, _, _) in enumerate(ISIC2019_ROWS):
        write_image(root / "ISIC_2019_Training_Input" / f"{i}.jpg", seed=n)
    return root


# --------------------------------------------------------------------------------------------------
# Manifest: 8 cases of 6 patients; case m2 has two clinical photos; m3 no clinical, m4 no dermoscopy;
# task pn (single) and attrs (multi); split column; metadata with a blank and an unseen value.
MANIFEST_SCHEMA = {
    "name": "toy",
    "fields": [
        {"name": "sex", "kind": "categorical", "values": ["Male", "Female"]},
        {"name": "age", "kind": "numeric", "bins": [30, 60]},
        {"name": "itch", "kind": "boolean"},
        {"name": "biopsy", "kind": "boolean", "leaky": True},
    ],
    "tasks": [
        {"name": "diag", "classes": ["BCC", "MEL", "NEV"]},
        {"name": "pn", "classes": ["ABS", "PRS"]},
        {"name": "attrs", "kind": "multi", "classes": ["dots", "lines", "veil"]},
    ],
}
MANIFEST_ROWS = [
    # case_id, patient, diagnosis, clinical, dermoscopy, sex, age, itch, biopsy, pn, attrs, split
    ("m0", "p0", "BCC", "img/c0.png", "img/d0.png", "Male", "25", "True", "True", "ABS", "dots", "train"),
    (
        "m1",
        "p0",
        "MEL",
        "img/c1.png",
        "img/d1.png",
        "male",
        "61",
        "False",
        "True",
        "PRS",
        "dots;veil",
        "train",
    ),
    (
        "m2",
        "p1",
        "NEV",
        "img/c2a.png;img/c2b.png",
        "img/d2.png",
        "Female",
        "",
        "",
        "False",
        "",
        "none",
        "train",
    ),
    ("m3", "p2", "NEV", "", "img/d3.png", "Other", "45", "True", "False", "ABS", "", "val"),
    ("m4", "p3", "MEL", "img/c4.png", "", "Female", "70", "False", "True", "PRS", "lines", "val"),
    ("m5", "p4", "BCC", "img/c5.png", "img/d5.png", "", "33", "True", "True", "ABS", "none", "test"),
    ("m6", "p4", "", "img/c6.png", "img/d6.png", "Male", "90", "False", "False", "ABS", "none", "test"),
    ("m7", "p5", "NEV", "img/c7.png", "img/d7.png", "Male", "12", "True", "False", "PRS", "veil", "test"),
]
MANIFEST_COLUMNS = [
    "case_id",
    "patient_id",
    "diagnosis",
    "clinical",
    "dermoscopy",
    "sex",
    "age",
    "itch",
    "biopsy",
    "pn",
    "attrs",
    "split",
]


def write_manifest(root: Path, rows=MANIFEST_ROWS, schema=MANIFEST_SCHEMA) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(root / "manifest.csv", index=False)
    (root / "schema.json").write_text(json.dumps(schema))
    for n, row in enumerate(rows):
        for k, p in enumerate((row[3] + ";" + row[4]).split(";")):
            if p:
                write_image(root / p, size=(40, 30), seed=10 * n + k)
    return root


@pytest.fixture
def derm7pt_root(tmp_path):
    return write_derm7pt(tmp_path / "derm7pt")


@pytest.fixture
def pad_root(tmp_path):
    return write_pad(tmp_path / "pad")


@pytest.fixture
def isic2017_root(tmp_path):
    return write_isic2017(tmp_path / "isic2017")


@pytest.fixture
def isic2018_root(tmp_path):
    return write_isic2018(tmp_path / "isic2018")


@pytest.fixture
def isic2019_root(tmp_path):
    return write_isic2019(tmp_path / "isic2019")


@pytest.fixture
def manifest_root(tmp_path):
    return write_manifest(tmp_path / "manifest")


@pytest.fixture
def layouts():
    """The writers and the constants the tests compare against."""
    return SimpleNamespace(
        DERM7PT_COPIES=DERM7PT_COPIES,
        DERM7PT_DIAG_GROUP=DERM7PT_DIAG_GROUP,
        MANIFEST_ROWS=MANIFEST_ROWS,
        MANIFEST_SCHEMA=MANIFEST_SCHEMA,
        write_manifest=write_manifest,
    )
