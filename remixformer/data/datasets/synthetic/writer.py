"""Writing the data set (manifest, schema, images; deterministic, per case), loading and reading it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from remixformer.data.cases import CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.datasets.manifest import load_manifest
from remixformer.data.datasets.synthetic.clinical import lesion_colour, render_clinical
from remixformer.data.datasets.synthetic.dermoscopy import render_dermoscopy
from remixformer.data.datasets.synthetic.design import (
    ATTRIBUTE_CLASSES,
    ATTRIBUTE_TASKS,
    CLASSES,
    ELEVATIONS,
    LOCATIONS,
    META_FIELDS,
    NAME,
    P_SECOND_CASE,
    P_SECOND_CLINICAL,
    PATTERNS,
    SCHEMA,
    SPLIT_SHARES,
    VERSION,
    Latents,
    _tasks_json,
    sample_latents,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# Writing the data set


def _case_rng(seed: int, case: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, case, stream]))


def _assign_patients(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient index of every case (20 % of patients have two cases) and each patient's split."""
    patient = np.empty(n, dtype=np.int64)
    p, i = 0, 0
    while i < n:
        k = 2 if (rng.random() < P_SECOND_CASE and i + 1 < n) else 1
        patient[i : i + k] = p
        p, i = p + 1, i + k
    shares = np.array([s for _, s in SPLIT_SHARES])
    split = rng.choice(len(SPLIT_SHARES), size=p, p=shares / shares.sum())
    return patient, split


def _render_case(args: tuple) -> dict[str, Any]:
    seed, i, case_id, lat, out, clinical_size, dermoscopy_size = args
    rng = _case_rng(seed, i, 1)  # the photos; the dermoscopy image has a stream of its own
    row: dict[str, Any] = {"clinical": [], "dermoscopy": [], "lesions": []}
    if lat["has_clinical"]:
        colour = lesion_colour(rng, lat["redness"], lat["darkness"])
        n_photos = 2 if rng.random() < P_SECOND_CLINICAL else 1
        for k in range(n_photos):
            arr, lesion = render_clinical(rng, clinical_size, lat["pattern"], colour)
            rel = f"clinical/{case_id}_{k}.png"
            Image.fromarray(arr).save(out / rel, compress_level=1)
            row["clinical"].append(rel)
            row["lesions"].append(lesion)
    if lat["has_dermoscopy"]:
        arr = render_dermoscopy(_case_rng(seed, i, 2), dermoscopy_size, lat["attributes"])
        rel = f"dermoscopy/{case_id}.png"
        Image.fromarray(arr).save(out / rel, compress_level=1)
        row["dermoscopy"].append(rel)
    return row


def generate(
    out_dir: str | os.PathLike,
    n_cases: int = 600,
    seed: int = 0,
    clinical_size: int = 256,
    dermoscopy_size: int = 256,
    workers: int = 1,
    overwrite: bool = False,
    test_cases: int = 0,
) -> Path:
    """Write the synthetic set (``manifest.csv``, ``schema.json``, ``latents.csv``, images) to ``out_dir``.

    ``test_cases``: that many more cases, all in the test split, of new patients, drawn from a random
    stream of their own: a larger test split for a comparison less noisy than the ~15 % of ``n_cases``
    the split gives; the first ``n_cases`` cases (their split included) are the same with or without them.
    Deterministic for ``seed`` whatever ``workers`` is. The folder is written atomically (a temporary
    sibling, then renamed). Returns the folder.
    """
    out = Path(out_dir).expanduser()
    if n_cases < 10:
        raise ValueError(f"synthetic: n_cases must be at least 10, got {n_cases}")
    if test_cases < 0:
        raise ValueError(f"synthetic: test_cases must be >= 0, got {test_cases}")
    if min(clinical_size, dermoscopy_size) < 64:
        raise ValueError("synthetic: image sizes must be at least 64")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(
                f"synthetic: {out} exists and is not empty; choose another folder or overwrite it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _write(tmp, n_cases, seed, clinical_size, dermoscopy_size, workers, test_cases)
        if out.exists() and any(out.iterdir()):
            if not overwrite:  # another process wrote it meanwhile (same seed: the same files)
                log.info("synthetic: %s appeared while generating; keeping it", out)
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            shutil.rmtree(out)
        os.replace(tmp, out)  # atomic; replaces an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write(
    out: Path, n: int, seed: int, clinical_size: int, dermoscopy_size: int, workers: int, test_cases: int = 0
) -> None:
    (out / "clinical").mkdir()
    (out / "dermoscopy").mkdir()
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0, 0]))
    lat = sample_latents(rng, n)
    patient, patient_split = _assign_patients(rng, n)
    width = len(str(n - 1))
    case_ids = [f"syn{i:0{width}d}" for i in range(n)]
    patient_ids = [f"pat{int(p):0{width}d}" for p in patient]
    splits = [SPLIT_SHARES[int(patient_split[p])][0] for p in patient]
    if test_cases:  # test-only cases of new patients, from a stream of their own (generate's docstring)
        extra_rng = np.random.default_rng(np.random.SeedSequence([seed, 0, 1]))
        extra = sample_latents(extra_rng, test_cases)
        lat = Latents(
            **{f.name: np.concatenate([getattr(lat, f.name), getattr(extra, f.name)]) for f in fields(lat)}
        )
        extra_patient = _assign_patients(extra_rng, test_cases)[0] + int(patient.max()) + 1
        patient = np.concatenate([patient, extra_patient])
        wide = len(str(n + test_cases - 1))
        case_ids += [f"syn{i:0{wide}d}" for i in range(n, n + test_cases)]
        patient_ids += [f"pat{int(p):0{wide}d}" for p in extra_patient]
        splits += ["test"] * test_cases
    # A patient's age and sex are the patient's: later cases of a patient copy the first one's.
    first: dict[int, int] = {}
    for i, p in enumerate(patient):
        j = first.setdefault(int(p), i)
        lat.age[i], lat.male[i] = lat.age[j], lat.male[j]
        lat.blank[i, :2] = lat.blank[j, :2]
    jobs = [
        (
            seed,
            i,
            case_ids[i],
            {
                "has_clinical": bool(lat.has_clinical[i]),
                "has_dermoscopy": bool(lat.has_dermoscopy[i]),
                "pattern": int(lat.pattern[i]),
                "redness": float(lat.redness[i]),
                "darkness": float(lat.darkness[i]),
                "attributes": lat.attributes[i],
            },
            out,
            clinical_size,
            dermoscopy_size,
        )
        for i in range(len(case_ids))
    ]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rendered = list(pool.map(_render_case, jobs, chunksize=8))
    else:
        rendered = [_render_case(j) for j in jobs]

    rows, latent_rows = [], []
    for i, rend in enumerate(rendered):
        meta = {
            "age": f"{lat.age[i]:g}",
            "sex": "male" if lat.male[i] else "female",
            "location": LOCATIONS[lat.location[i]],
            "elevation": ELEVATIONS[lat.elevation[i]],
            "changed": "True" if lat.changed[i] else "False",
        }
        for k, f in enumerate(META_FIELDS):
            if lat.blank[i, k]:
                meta[f] = ""
        row = {
            "case_id": case_ids[i],
            "patient_id": patient_ids[i],
            "diagnosis": CLASSES[lat.diag[i]],
            "clinical": ";".join(rend["clinical"]),
            "dermoscopy": ";".join(rend["dermoscopy"]),
            **meta,
        }
        for k, t in enumerate(ATTRIBUTE_TASKS):
            row[t] = ATTRIBUTE_CLASSES[t][int(lat.attributes[i, k])]
        row["split"] = splits[i]
        rows.append(row)
        latent_rows.append(
            {
                "case_id": case_ids[i],
                "clinical_pattern": PATTERNS[lat.pattern[i]],
                "redness": round(float(lat.redness[i]), 4),
                "darkness": round(float(lat.darkness[i]), 4),
                "lesions": ";".join(f"{x:.1f},{y:.1f},{r:.1f}" for x, y, r in rend["lesions"]),
            }
        )
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False, lineterminator="\n")
    pd.DataFrame(latent_rows).to_csv(out / "latents.csv", index=False, lineterminator="\n")
    schema = {
        "name": NAME,
        "description": "synthetic skin-lesion data set (remixformer synth)",
        **SCHEMA.to_dict(),
        "tasks": _tasks_json(),
    }
    (out / "schema.json").write_text(json.dumps(schema, indent=2) + "\n")
    info = {
        "generator": "remixformer.data.datasets.synthetic",
        "version": VERSION,
        "n_cases": n,
        "test_cases": test_cases,
        "seed": seed,
        "clinical_size": clinical_size,
        "dermoscopy_size": dermoscopy_size,
    }
    (out / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n")


def set_identity(n_cases: int, test_cases: int, seed: int) -> dict[str, int]:
    """What makes a synthetic set the one asked for (compared with :func:`stored_identity`)."""
    return {"n_cases": n_cases, "test_cases": test_cases, "seed": seed, "version": VERSION}


def stored_identity(root: str | os.PathLike) -> dict[str, Any]:
    """:func:`set_identity` of the set in ``root``, from its ``synthetic.json`` (sets written before
    test-only cases existed have none)."""
    info = json.loads((Path(root).expanduser() / "synthetic.json").read_text())
    return {k: info.get(k, 0 if k == "test_cases" else None) for k in set_identity(0, 0, 0)}


def load(cfg: DataConfig) -> CaseTable:
    """Load the synthetic set in ``cfg.root``, generating it there first when it is absent or empty."""
    root = Path(cfg.root).expanduser()
    info_path = root / "synthetic.json"
    if not root.exists() or not any(root.iterdir()):
        log.info(
            "synthetic: generating %d cases (seed %d) in %s", cfg.synthetic_cases, cfg.synthetic_seed, root
        )
        generate(root, cfg.synthetic_cases, cfg.synthetic_seed, test_cases=cfg.synthetic_test_cases)
    elif not info_path.is_file():
        raise ValueError(
            f"synthetic: {root} is not empty and holds no synthetic.json; point root at an empty folder "
            "or at a folder written by `remixformer synth`"
        )
    else:
        want = set_identity(cfg.synthetic_cases, cfg.synthetic_test_cases, cfg.synthetic_seed)
        have = stored_identity(root)
        if have != want:
            log.warning(
                "synthetic: %s holds a set generated with %s, not the configured %s; using it as it is",
                root,
                have,
                want,
            )
    return load_manifest(root / "manifest.csv", root / "schema.json", cfg, name=NAME)


def read_lesions(root: str | os.PathLike) -> dict[str, tuple[float, float, float, int]]:
    """Where the lesion is in every clinical photo of a synthetic set (from ``latents.csv``):
    resolved image path -> (centre x, centre y, radius, photo side), in pixels of the photo as written."""
    root = Path(root).expanduser()
    path = root / "latents.csv"
    if not path.is_file():
        raise ValueError(f"synthetic: {path} not found; it is written by `remixformer synth` with the images")
    size = int(json.loads((root / "synthetic.json").read_text()).get("clinical_size", 256))
    manifest = pd.read_csv(root / "manifest.csv", keep_default_na=False, dtype=str).set_index("case_id")
    out = {}
    for row in pd.read_csv(path, keep_default_na=False, dtype=str).itertuples():
        photos = [p for p in manifest.loc[row.case_id, "clinical"].split(";") if p]
        boxes = [b for b in row.lesions.split(";") if b]
        for photo, box in zip(photos, boxes):
            cx, cy, r = (float(v) for v in box.split(","))
            out[str((root / photo).resolve())] = (cx, cy, r, size)
    return out
