"""Exports of a study's answers.

- The **reader CSV** (:func:`reader_csv_text`, :func:`write_reader_csv`): exactly the file
  ``remixformer analyze readers --readers`` reads (:func:`remixformer.explain.readers.read_reader_csv`),
  with the ``stage`` column: ``reader_id, group, case_id, stage, answer``, one row per answer.
- The **details CSV** (:func:`write_details_csv`): the same rows plus ``confidence, case_number,
  stage_number, step, shown_at, answered_at, seconds, times_shown`` (times in UTC, ISO 8601; seconds
  from the first showing of the stage to the answer).

Rows come by reader (in the order the accounts were made), then in reading order. Files are written
atomically (a temporary file moved into place).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from remixformer.explain.readers import READER_COLUMNS, STAGE_COLUMN
from remixformer.serialization import atomic_write
from remixformer.study.study import Study

log = logging.getLogger(__name__)

EXPORT_COLUMNS = (
    *READER_COLUMNS[:3],
    STAGE_COLUMN,
    READER_COLUMNS[3],
)  # reader_id, group, case_id, stage, answer
DETAIL_COLUMNS = (
    *EXPORT_COLUMNS,
    "confidence",
    "case_number",
    "stage_number",
    "step",
    "shown_at",
    "answered_at",
    "seconds",
    "times_shown",
)


def _csv_text(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r.get(c) is None else r[c] for c in columns])
    return buf.getvalue()


def reader_csv_text(study: Study, stage: str | None = None) -> str:
    """The reader CSV of every answer (or of one stage's) as text."""
    return _csv_text(EXPORT_COLUMNS, study.answer_rows(stage))


def details_csv_text(study: Study, stage: str | None = None) -> str:
    return _csv_text(DETAIL_COLUMNS, study.answer_rows(stage))


def _write(path: str | os.PathLike[str], columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> int:
    text = _csv_text(columns, rows)
    atomic_write(Path(path), lambda p: p.write_text(text, encoding="utf-8", newline=""))
    log.info("wrote %d answer(s) to %s", len(rows), path)
    return len(rows)


def write_reader_csv(study: Study, path: str | os.PathLike[str], stage: str | None = None) -> int:
    """Write the reader CSV to ``path``; returns the number of answers written."""
    return _write(path, EXPORT_COLUMNS, study.answer_rows(stage))


def write_details_csv(study: Study, path: str | os.PathLike[str], stage: str | None = None) -> int:
    """Write the details CSV to ``path``; returns the number of answers written."""
    return _write(path, DETAIL_COLUMNS, study.answer_rows(stage))
