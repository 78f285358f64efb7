"""Scoring many cases: a manifest CSV in, one row of probabilities per case out.

The manifest is the project's format (docs/data.md): ``case_id``, ``clinical`` and ``dermoscopy``
(``;``-separated image paths, relative to the manifest's folder) and one column per metadata field of
the model's schema; ``diagnosis``, ``patient_id``, ``split`` and other columns are carried over or
ignored. Nothing is required but the inputs: a blank ``case_id`` becomes ``row<N>``.

A row that cannot be scored (missing or unreadable image, metadata outside the schema, no input the
model takes) gets its message in the ``error`` column and is returned in :attr:`BatchResult.errors`
with its row number; the other rows are scored. A case with several images is scored once per image
combination and its probabilities are averaged (as evaluation does).
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from remixformer.data.datasets.common import cell, read_csv
from remixformer.data.datasets.manifest import image_paths
from remixformer.serving.predictor import LETTER_NAMES, Predictor

log = logging.getLogger(__name__)

CARRIED = ("patient_id", "diagnosis")  # copied to the output when the manifest has them


@dataclass
class Row:
    """One manifest row; ``row`` is 1-based over the data rows (CSV line = row + 1)."""

    row: int
    case_id: str
    clinical: list[str] = field(default_factory=list)
    dermoscopy: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    carried: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def where(self) -> str:
        return f"row {self.row} (CSV line {self.row + 1}, case {self.case_id!r})"


@dataclass
class RowError:
    row: int
    case_id: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row} (CSV line {self.row + 1}, case {self.case_id!r}): {self.message}"


@dataclass
class BatchResult:
    out: Path
    n_rows: int
    n_scored: int
    errors: list[RowError]
    seconds: float
    n_samples: int

    @property
    def cases_per_second(self) -> float:
        return self.n_scored / self.seconds if self.seconds > 0 else float("nan")


def read_rows(manifest: str | os.PathLike, predictor: Predictor) -> tuple[list[Row], list[str]]:
    """The manifest's rows, each checked for what can be checked without opening images.

    Returns the rows (a row that fails a check carries its ``error``) and notes for the user (columns
    ignored or missing).
    """
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise ValueError(f"manifest file not found: {manifest}")
    df = read_csv(manifest, "manifest")
    base = manifest.parent
    mods = predictor.modalities
    schema = predictor.schema if "M" in mods else None
    notes: list[str] = []
    for m in "CD":
        col = LETTER_NAMES[m]
        if col in df.columns and m not in mods:
            notes.append(f"column {col!r} ignored: the model was trained without {col} images")
    fields = schema.field_names if schema is not None else []
    missing = [f for f in fields if f not in df.columns]
    if missing:
        notes.append(f"no column for metadata field(s) {missing}: treated as unknown for every case")
    if not any(LETTER_NAMES[m] in df.columns for m in mods if m in "CD") and len(missing) == len(fields):
        raise ValueError(
            f"{manifest}: no column holds an input of the model (it takes "
            f"{', '.join(LETTER_NAMES[m] for m in mods)}; image columns are 'clinical' and 'dermoscopy', "
            f"metadata columns are named after the fields {fields})"
        )
    known = {"case_id", "clinical", "dermoscopy", "split", *CARRIED, *fields}
    ignored = [c for c in df.columns if c not in known]
    if ignored:
        notes.append(f"column(s) {ignored} ignored (not inputs of the model)")

    rows: list[Row] = []
    seen: dict[str, int] = {}
    for i, record in enumerate(df.to_dict("records"), start=1):
        case_id = cell(record.get("case_id")) or f"row{i}"
        row = Row(
            row=i,
            case_id=case_id,
            clinical=image_paths(record.get("clinical"), base) if "C" in mods else [],
            dermoscopy=image_paths(record.get("dermoscopy"), base) if "D" in mods else [],
            carried={c: cell(record.get(c)) or "" for c in CARRIED if c in df.columns},
        )
        if case_id in seen:
            row.error = f"case_id {case_id!r} repeats row {seen[case_id]}; case ids must be unique"
        seen.setdefault(case_id, i)
        if schema is not None:
            meta = {f: cell(record.get(f)) for f in fields}
            try:
                schema.validate(meta)
            except ValueError as e:
                row.error = row.error or str(e)
            row.metadata = meta
        has_meta = schema is not None and schema.known_mask(row.metadata or {})
        if not (row.clinical or row.dermoscopy or has_meta) and row.error is None:
            row.error = f"no input: the row gives none of {', '.join(LETTER_NAMES[m] for m in mods)}"
        rows.append(row)
    return rows, notes


class _Samples(Dataset):
    """One sample per (row, image combination): a preprocessed batch of one, or the error."""

    def __init__(self, predictor: Predictor, rows: list[Row]) -> None:
        self.predictor = predictor
        self.rows = rows
        self.samples: list[tuple[int, str | None, str | None]] = []
        for r, row in enumerate(rows):
            if row.error is not None:
                continue
            no_image: list[str | None] = [None]
            for c, d in itertools.product(row.clinical or no_image, row.dermoscopy or no_image):
                self.samples.append((r, c, d))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[int, dict[str, Any] | None, str | None]:
        r, c, d = self.samples[i]
        try:
            batch = self.predictor.preprocess(clinical=c, dermoscopy=d, metadata=self.rows[r].metadata)
        except ValueError as e:
            return r, None, str(e)
        return r, batch, None


def stack_batches(batches: list[dict[str, Any]]) -> dict[str, Any]:
    """Batches from :meth:`Predictor.preprocess` (one case each) as one batch."""
    out: dict[str, Any] = {}
    for key, value in batches[0].items():
        if isinstance(value, torch.Tensor):
            out[key] = torch.cat([b[key] for b in batches])
        else:
            out[key] = [x for b in batches for x in b[key]]
    return out


def _header(predictor: Predictor, carried: list[str]) -> list[str]:
    cols = ["row", "case_id", *carried, "predicted", "probability", "modalities_used"]
    for t in predictor.tasks:
        cols += [f"{t.name}_prob_{c}" for c in t.classes]
    return [*cols, "error"]


def score_manifest(
    predictor: Predictor,
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    progress: bool = True,
) -> BatchResult:
    """Score every row of ``manifest`` and write ``out`` (CSV, written atomically).

    Raises ``ValueError`` only when the manifest as a whole cannot be read; row problems are
    returned in :attr:`BatchResult.errors` and written to the ``error`` column.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    start = time.perf_counter()
    rows, notes = read_rows(manifest, predictor)
    for note in notes:
        log.warning("%s: %s", manifest, note)
    data = _Samples(predictor, rows)
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    sums: dict[int, dict[str, np.ndarray]] = {}
    counts: dict[int, int] = {}
    used: dict[int, set[str]] = {}
    task_names = [t.name for t in predictor.tasks]
    classes = {t.name: list(t.classes) for t in predictor.tasks}
    bar = tqdm(total=len(data), desc="scoring", unit="image set", disable=not progress)
    try:
        for items in loader:
            good = []
            for r, batch, error in items:
                if error is not None:
                    rows[r].error = rows[r].error or error
                elif rows[r].error is None:
                    good.append((r, batch))
            if good:
                preds = predictor.predict_batch(stack_batches([b for _, b in good]), top_k=1)
                for (r, _), p in zip(good, preds):
                    acc = sums.setdefault(r, {t: np.zeros(len(classes[t])) for t in task_names})
                    for t in task_names:
                        acc[t] += np.asarray([p.probabilities[t][c] for c in classes[t]])
                    counts[r] = counts.get(r, 0) + 1
                    used.setdefault(r, set()).update(p.modalities_used)
            bar.update(len(items))
    finally:
        bar.close()

    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    carried = [c for c in CARRIED if any(c in row.carried for row in rows)]
    header = _header(predictor, carried)
    diag = predictor.tasks[0]
    errors: list[RowError] = []
    n_scored = 0
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r, row in enumerate(rows):
            line: list[Any] = [row.row, row.case_id, *(row.carried.get(c, "") for c in carried)]
            if row.error is not None or r not in counts:
                message = row.error or "no prediction"
                errors.append(RowError(row.row, row.case_id, message))
                n_blank = len(header) - len(line) - 1
                writer.writerow([*line, *([""] * n_blank), message])
                continue
            probs = {t: sums[r][t] / counts[r] for t in task_names}
            best = int(np.argmax(probs[diag.name]))
            line += [
                diag.classes[best],
                f"{probs[diag.name][best]:.6f}",
                "".join(m for m in "CDM" if m in used[r]),
            ]
            for t in task_names:
                line += [f"{v:.6f}" for v in probs[t]]
            writer.writerow([*line, ""])
            n_scored += 1
    os.replace(tmp, out)
    seconds = time.perf_counter() - start
    log.info("scored %d of %d case(s) in %.1f s -> %s", n_scored, len(rows), seconds, out)
    return BatchResult(out, len(rows), n_scored, errors, seconds, len(data))


def read_scores(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a file written by :func:`score_manifest` (for tests and scripts)."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
