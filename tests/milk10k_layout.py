"""A tiny MILK10k in the official layout, written by the tests (the real tables never enter the suite).

:func:`write_milk10k` writes the four official tables and, optionally, tiny JPEG images:

- training: 44 lesions, 4 per class of the 11 (``IL_T00`` ... ``IL_T43``, class ``i // 4``), two image
  rows each (``clinical: close-up`` first for even lesions, ``dermoscopic`` first for odd ones);
  ``IL_T04`` has a blank age and site; ``IL_T05``'s clinical image is ``altered``;
- the Supplement: one row per training image; ``diagnosis_confirm_type`` is ``histopathology`` except
  for the NV lesions; ``invasion_thickness_interval`` only on the MEL lesions;
- the benchmark: 4 lesions (``IL_B0`` ... ``IL_B3``), no labels.

MONET scores are a function of the lesion and image type (reproducible).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("AKIEC", "BCC", "BEN_OTH", "BKL", "DF", "INF", "MAL_OTH", "MEL", "NV", "SCCKA", "VASC")
MONET = (
    "MONET_ulceration_crust",
    "MONET_hair",
    "MONET_vasculature_vessels",
    "MONET_erythema",
    "MONET_pigmented",
    "MONET_gel_water_drop_fluid_dermoscopy_liquid",
    "MONET_skin_markings_pen_ink_purple_pen",
)
META_COLUMNS = [
    "lesion_id",
    "image_type",
    "isic_id",
    "attribution",
    "copyright_license",
    "image_manipulation",
    "age_approx",
    "sex",
    "skin_tone_class",
    "site",
    *MONET,
]
SITES = ("head_neck_face", "trunk", "upper_extremity", "lower_extremity", "hand", "foot", "genital")
N_PER_CLASS = 4
TRAIN_IDS = [f"IL_T{i:02d}" for i in range(N_PER_CLASS * len(CLASSES))]
BENCHMARK_IDS = [f"IL_B{i}" for i in range(4)]


def label_of(lesion: str) -> int:
    return int(lesion[4:]) // N_PER_CLASS


def isic_ids(lesion: str) -> dict[str, str]:
    """image type -> ISIC id of a lesion's two images."""
    n = int(lesion[4:]) + (0 if lesion.startswith("IL_T") else 500)
    return {"clinical: close-up": f"ISIC_{1000 + 2 * n:07d}", "dermoscopic": f"ISIC_{1001 + 2 * n:07d}"}


def monet_scores(lesion: str, image_type: str) -> list[float]:
    seed = [ord(ch) for ch in lesion + image_type]
    return [round(float(x), 6) for x in np.random.default_rng(seed).random(len(MONET))]


def _write(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _meta_rows(lesions: list[str]) -> list[list]:
    rows = []
    for n, lesion in enumerate(lesions):
        k = int(lesion[4:])
        types = ["clinical: close-up", "dermoscopic"]
        if n % 2:
            types.reverse()
        for image_type in types:
            altered = lesion == "IL_T05" and image_type.startswith("clinical")
            rows.append(
                [
                    lesion,
                    image_type,
                    isic_ids(lesion)[image_type],
                    "MILK study team",
                    "CC-BY-NC",
                    "altered" if altered else "instrument only",
                    "" if lesion == "IL_T04" else 20 + 5 * (k % 12),
                    ("female", "male")[k % 2],
                    k % 6,
                    "" if lesion == "IL_T04" else SITES[k % len(SITES)],
                    *monet_scores(lesion, image_type),
                ]
            )
    return rows


def write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="JPEG")


def write_milk10k(
    root: Path, *, images: bool = False, nested: bool = False, supplement: bool = True, benchmark: bool = True
) -> Path:
    """Write the layout into ``root``; ``images``: 8x8 JPEGs for every image; ``nested``: inside one more
    folder of the same name, as the archive unpacks."""
    root = Path(root)
    _write(
        root / "MILK10k_Training_GroundTruth.csv",
        ["lesion_id", *CLASSES],
        [[les, *("1.0" if j == label_of(les) else "0.0" for j in range(len(CLASSES)))] for les in TRAIN_IDS],
    )
    _write(root / "MILK10k_Training_Metadata.csv", META_COLUMNS, _meta_rows(TRAIN_IDS))
    if supplement:
        rows = []
        for lesion in TRAIN_IDS:
            y = CLASSES[label_of(lesion)]
            for isic in isic_ids(lesion).values():
                confirm = "single contributor clinical assessment" if y == "NV" else "histopathology"
                rows.append([isic, f"fine {y}", confirm, "<0.8" if y == "MEL" else ""])
        _write(
            root / "MILK10k_Training_Supplement.csv",
            ["isic_id", "diagnosis_full", "diagnosis_confirm_type", "invasion_thickness_interval"],
            rows,
        )
    if benchmark:
        _write(root / "MILK10k_Test_Metadata.csv", META_COLUMNS, _meta_rows(BENCHMARK_IDS))
    if images:
        for folder, lesions in (("MILK10k_Training_Input", TRAIN_IDS), ("MILK10k_Test_Input", BENCHMARK_IDS)):
            base = root / folder / folder if nested else root / folder
            for n, lesion in enumerate(lesions):
                for k, isic in enumerate(isic_ids(lesion).values()):
                    write_image(base / lesion / f"{isic}.jpg", seed=10 * n + k)
    return root
