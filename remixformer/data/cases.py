"""A loaded data set: cases with their image paths, metadata, targets, group and official split.

Every loader (public sets, manifest, synthetic) returns a :class:`CaseTable`; splits, the torch
``Dataset`` and ``data check`` only read this structure.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from remixformer.keys import IGNORE_INDEX
from remixformer.schema import MetadataSchema
from remixformer.tasks import DIAG, MULTI, TaskSpec

SPLITS = ("train", "val", "test")
IMAGE_MODALITIES = ("C", "D")  # letters of the image modalities (keys.MODALITY_KEYS)


@dataclass
class Case:
    """One case (lesion visit): ``targets`` maps task -> class index (``-1`` unknown) or, for a
    multi-label task, a list of 0.0/1.0/NaN (NaN unknown)."""

    case_id: str
    group_id: str  # patient or lesion: no group may straddle two folds or splits
    targets: dict[str, Any]
    clinical: list[str] = field(default_factory=list)
    dermoscopy: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    split: str | None = None  # official split, if the data set has one
    source: str = ""  # where the case was read, e.g. "meta/meta.csv line 12", for messages

    def images(self, letter: str) -> list[str]:
        """Image paths of modality ``"C"`` or ``"D"``."""
        if letter == "C":
            return self.clinical
        if letter == "D":
            return self.dermoscopy
        raise ValueError(f"image modality must be 'C' or 'D', got {letter!r}")

    def where(self) -> str:
        return f"case {self.case_id!r}" + (f" ({self.source})" if self.source else "")


@dataclass
class CaseTable:
    """Cases + tasks + metadata schema of one data set.

    ``modalities`` are the letters the set provides (``"CDM"``, ``"CM"``, ``"D"``...).
    ``leaky_fields_included`` names metadata fields that leak the label and that the user asked for:
    every report of a run using them must say so (see :meth:`summary`).
    """

    name: str
    cases: list[Case]
    tasks: tuple[TaskSpec, ...]
    schema: MetadataSchema
    modalities: str
    root: str = ""
    leaky_fields_included: list[str] = field(default_factory=list)
    leaky_fields_available: list[str] = field(
        default_factory=list
    )  # leaky fields the set has (excluded or not)
    notes: list[str] = field(default_factory=list)  # facts a user should see (e.g. copies treated as absent)
    # fields of the data set's files that are the answer or reveal it (MILK10k's Supplement): never
    # inputs, not even by name; name -> what it is (with its measured association to the label)
    answer_fields: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (case id, reason) of cases left out
    split_name: str = ""  # which official split protocol the ``split`` column holds

    def __post_init__(self) -> None:
        if not self.tasks or self.tasks[0].name != DIAG:
            raise ValueError(
                f"{self.name}: the first task must be {DIAG!r}, got {[t.name for t in self.tasks]}"
            )
        self._index = {c.case_id: i for i, c in enumerate(self.cases)}
        if len(self._index) != len(self.cases):
            dupes = [k for k, n in Counter(c.case_id for c in self.cases).items() if n > 1]
            raise ValueError(f"{self.name}: repeated case ids {dupes[:10]}")

    # --- access --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> Case:
        return self.cases[i]

    def index_of(self, case_id: str) -> int:
        return self._index[case_id]

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"{self.name}: no task {name!r}; tasks are {[t.name for t in self.tasks]}")

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]

    @property
    def group_ids(self) -> np.ndarray:
        return np.asarray([c.group_id for c in self.cases], dtype=object)

    @property
    def has_official_split(self) -> bool:
        return bool(self.cases) and all(c.split in SPLITS for c in self.cases)

    def labels(self, task: str = DIAG) -> np.ndarray:
        """Class indices of a single-label task, ``-1`` where unknown."""
        spec = self.task(task)
        if spec.kind == MULTI:
            raise ValueError(f"task {task!r} is multi-label; use targets_array()")
        return np.asarray([int(c.targets.get(task, IGNORE_INDEX)) for c in self.cases], dtype=np.int64)

    def targets_array(self, task: str) -> np.ndarray:
        """``(N,)`` int64 for a single-label task, ``(N, A)`` float32 (NaN unknown) for a multi-label one."""
        spec = self.task(task)
        if spec.kind != MULTI:
            return self.labels(task)
        out = np.full((len(self.cases), spec.num_classes), np.nan, dtype=np.float32)
        for i, c in enumerate(self.cases):
            v = c.targets.get(task)
            if v is not None:
                out[i] = np.asarray(v, dtype=np.float32)
        return out

    def has_modality(self, letter: str) -> np.ndarray:
        """Per-case presence of modality ``letter`` (C, D: at least one image; M: a known field)."""
        if letter in IMAGE_MODALITIES:
            return np.asarray([bool(c.images(letter)) for c in self.cases])
        if letter == "M":
            return np.asarray([self.schema.known_mask(c.metadata) for c in self.cases])
        raise ValueError(f"modality letter must be C, D or M, got {letter!r}")

    def metadata_matrix(self) -> np.ndarray:
        """``(N, schema.dim)`` one-hot metadata of every case."""
        return self.schema.encode_many([c.metadata for c in self.cases])

    def select(self, indices: Sequence[int]) -> CaseTable:
        """A new table holding only ``indices`` (in that order)."""
        return replace(
            self, cases=[self.cases[i] for i in indices], notes=list(self.notes), skipped=list(self.skipped)
        )

    def without_cases(self, drop: dict[str, str]) -> CaseTable:
        """Drop cases by id, recording ``reason`` for each in :attr:`skipped`."""
        kept = [c for c in self.cases if c.case_id not in drop]
        return replace(
            self, cases=kept, notes=list(self.notes), skipped=list(self.skipped) + sorted(drop.items())
        )

    # --- summaries -----------------------------------------------------------------------------
    def class_counts(self, task: str = DIAG, indices: Sequence[int] | None = None) -> dict[str, int]:
        """Counts per class (single-label: class names and ``unknown``; multi-label: positives per
        attribute, ``unknown`` = cases with any unknown attribute)."""
        spec = self.task(task)
        idx = range(len(self.cases)) if indices is None else indices
        counts = {name: 0 for name in spec.classes}
        counts["unknown"] = 0
        for i in idx:
            v = self.cases[i].targets.get(task)
            if spec.kind == MULTI:
                if v is None or any(isinstance(x, float) and math.isnan(x) for x in v):
                    counts["unknown"] += 1
                if v is not None:
                    for name, x in zip(spec.classes, v):
                        if x == 1:
                            counts[name] += 1
            elif v is None or int(v) < 0:
                counts["unknown"] += 1
            else:
                counts[spec.classes[int(v)]] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """JSON-safe description of the data set, for run directories and reports."""
        out: dict[str, Any] = {
            "name": self.name,
            "root": self.root,
            "n_cases": len(self.cases),
            "modalities": self.modalities,
            "tasks": [t.to_dict() for t in self.tasks],
            "metadata_schema": self.schema.to_dict(),
            "metadata_dim": self.schema.dim,
            "leaky_fields_included": list(self.leaky_fields_included),
            "leaky_fields_available": list(self.leaky_fields_available),
            "answer_fields": dict(self.answer_fields),
            "notes": list(self.notes),
            "skipped_cases": [{"case_id": c, "reason": r} for c, r in self.skipped],
            "class_counts": {t.name: self.class_counts(t.name) for t in self.tasks},
            "modality_counts": {m: int(self.has_modality(m).sum()) for m in self.modalities},
        }
        if self.leaky_fields_included:
            out["warning"] = leakage_warning(self.leaky_fields_included)
        return out

    def write_summary(self, run_dir: str | Path, filename: str = "data.json") -> Path:
        path = Path(run_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")
        return path


def leakage_warning(fields: Sequence[str]) -> str:
    return (
        f"LEAKAGE: metadata field(s) {list(fields)} leak the label (they are recorded with the "
        "diagnosis in hand) and were included as inputs at the user's request; results are not "
        "comparable with label-free inputs"
    )
