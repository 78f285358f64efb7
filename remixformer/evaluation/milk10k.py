"""The MILK10k challenge's submission file: writing it for the 479 benchmark lesions, and checking any
submission against ``MILK10k_Test_Metadata.csv``.

Format (docs/milk10k.md): a CSV with a header row, the lesion id column first (``lesion_id``, as on the
challenge page and in the official ground truth; ``--id-column lesion`` writes and checks the other
spelling), then the 11 classes in the official order ``AKIEC, BCC, BEN_OTH, BKL, DF, INF, MAL_OTH, MEL,
NV, SCCKA, VASC``; one row per benchmark lesion; every value a probability in [0, 1]. The challenge
binarises each class at >= 0.5 and scores the macro F1.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from remixformer.data.datasets.common import find_one
from remixformer.data.datasets.milk10k import BENCHMARK, TEST_METADATA
from remixformer.evaluation.evaluate import checkpoint_cases, predict_cases
from remixformer.evaluation.thresholds import THRESHOLDS_FILE, DecisionRule
from remixformer.models.checkpoint import load_model
from remixformer.serialization import write_text_atomic

log = logging.getLogger(__name__)

CLASSES = ("AKIEC", "BCC", "BEN_OTH", "BKL", "DF", "INF", "MAL_OTH", "MEL", "NV", "SCCKA", "VASC")
ID_COLUMN = "lesion_id"
ID_COLUMNS = ("lesion_id", "lesion")  # the challenge page's spelling, and the issue's
MAX_LISTED = 10


def submission_text(lesion_ids: Sequence[str], probs: Any, id_column: str = ID_COLUMN) -> str:
    """The CSV text of a submission (values clipped to [0, 1] against float rounding)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(lesion_ids), len(CLASSES)):
        raise ValueError(
            f"submission: expected probabilities of shape ({len(lesion_ids)}, 11), got {p.shape}"
        )
    if not np.isfinite(p).all():
        raise ValueError("submission: probabilities contain NaN or inf")
    if id_column not in ID_COLUMNS:
        raise ValueError(f"submission: the id column is one of {list(ID_COLUMNS)}, got {id_column!r}")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow([id_column, *CLASSES])
    for lesion, row in zip(lesion_ids, np.clip(p, 0.0, 1.0)):
        w.writerow([lesion, *(repr(float(v)) for v in row)])
    return out.getvalue()


def write_submission(
    path: str | Path, lesion_ids: Sequence[str], probs: Any, id_column: str = ID_COLUMN
) -> Path:
    return write_text_atomic(Path(path), submission_text(lesion_ids, probs, id_column))


# ----------------------------------------------------------------------------------------------------
# Checking a submission
# ----------------------------------------------------------------------------------------------------


@dataclass
class SubmissionCheck:
    """What :func:`check_submission` found; ``ok`` when nothing is wrong."""

    path: str
    n_rows: int = 0
    n_expected: int = 0
    errors: list[str] = field(default_factory=list)
    positives: dict[str, int] = field(default_factory=dict)  # class -> rows >= 0.5

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        if self.ok:
            counts = ", ".join(f"{c} {n}" for c, n in self.positives.items())
            return (
                f"{self.path}: OK, {self.n_rows} lesions x {len(CLASSES)} classes, every benchmark lesion "
                f"once, values in [0, 1]\nrows at >= 0.5 per class: {counts}"
            )
        lines = [f"{self.path}: {len(self.errors)} problem(s):"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


def benchmark_lesions(metadata_csv: str | Path) -> list[str]:
    """The lesion ids of ``MILK10k_Test_Metadata.csv`` (each once, in file order)."""
    path = Path(metadata_csv)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable CSV file: {e}") from e
    if not rows or "lesion_id" not in rows[0]:
        raise ValueError(f"{path}: expected the benchmark metadata with a 'lesion_id' column")
    return list(dict.fromkeys(r["lesion_id"].strip() for r in rows if (r["lesion_id"] or "").strip()))


def _listing(items: Sequence[str]) -> str:
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def check_submission(
    path: str | Path, metadata_csv: str | Path, id_column: str = ID_COLUMN
) -> SubmissionCheck:
    """Validate a submission file against the benchmark's lesions; every problem names the file and,
    where it has one, the line and the column."""
    path = Path(path)
    expected = benchmark_lesions(metadata_csv)
    report = SubmissionCheck(str(path), n_expected=len(expected))
    err = report.errors.append
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        err(f"{path}: not UTF-8 text ({e})")
        return report
    except OSError as e:
        err(f"{path}: cannot be read ({e.strerror or e})")
        return report
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        err(f"{path}: not a readable CSV file: {e}")
        return report
    if not rows:
        err(f"{path}: the file is empty; expected a header row {id_column},{','.join(CLASSES)}")
        return report
    header = [h.strip() for h in rows[0]]
    want = [id_column, *CLASSES]
    if header != want:
        err(f"{path} line 1: wrong header {header}; expected {want}" + _header_hint(header, want))
        return report
    seen: dict[str, int] = {}
    positives = np.zeros(len(CLASSES), dtype=np.int64)
    known = set(expected)
    extra: list[str] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            err(f"{path} line {line}: empty row")
            continue
        if len(row) != len(want):
            err(f"{path} line {line}: {len(row)} fields; expected {len(want)} ({id_column} and 11 classes)")
            continue
        lesion = row[0].strip()
        if not lesion:
            err(f"{path} line {line}, column {id_column!r}: blank lesion id")
            continue
        if lesion in seen:
            err(
                f"{path} line {line}, column {id_column!r}: lesion {lesion!r} again "
                f"(first on line {seen[lesion]})"
            )
            continue
        seen[lesion] = line
        if lesion not in known:
            extra.append(f"{lesion} (line {line})")
        for j, (cls, raw) in enumerate(zip(CLASSES, row[1:])):
            where = f"{path} line {line}, column {cls!r} (lesion {lesion!r})"
            value = raw.strip()
            try:
                x = float(value)
            except ValueError:
                err(
                    f"{where}: {raw!r} is not a number"
                    if value
                    else f"{where}: blank; expected a probability"
                )
                continue
            if math.isnan(x):
                err(f"{where}: NaN; expected a probability in [0, 1]")
            elif not 0.0 <= x <= 1.0:
                err(f"{where}: {value} is outside [0, 1]")
            elif x >= 0.5:
                positives[j] += 1
    report.n_rows = len(seen)
    missing = [x for x in expected if x not in seen]
    if missing:
        err(f"{path}: {len(missing)} benchmark lesion(s) missing: {_listing(missing)}")
    if extra:
        err(
            f"{path}: {len(extra)} lesion(s) that are not in the benchmark ({Path(metadata_csv).name}): "
            f"{_listing(extra)}"
        )
    report.positives = dict(zip(CLASSES, positives.tolist()))
    return report


def _header_hint(header: list[str], want: list[str]) -> str:
    if header and header[0] in ID_COLUMNS and header[0] != want[0]:
        return f" (the id column is {header[0]!r}; check with --id-column {header[0]} if that is meant)"
    missing = [c for c in want[1:] if c not in header]
    extra = [c for c in header[1:] if c not in want]
    if not missing and not extra and sorted(header[1:]) == sorted(want[1:]):
        return " (the classes are all there but out of order)"
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    return f" ({'; '.join(parts)})" if parts else ""


# ----------------------------------------------------------------------------------------------------
# Writing the submission of a model
# ----------------------------------------------------------------------------------------------------


def model_probabilities(preds: Any) -> np.ndarray:
    """The diagnosis probabilities of :class:`Predictions` in the official class order."""
    d = preds.diagnosis
    names = list(d.classes)
    if sorted(names) != sorted(CLASSES):
        raise ValueError(
            f"the model's diagnosis classes {names} are not MILK10k's {list(CLASSES)}: it was not trained "
            "on MILK10k"
        )
    order = [names.index(c) for c in CLASSES]
    return preds.probs[d.name][:, order]


def make_submission(
    checkpoint: str | Path,
    out: str | Path,
    *,
    root: str | None = None,
    thresholds: str | Path | None = "auto",
    id_column: str = ID_COLUMN,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = False,
) -> tuple[SubmissionCheck, dict[str, Any]]:
    """Predict the benchmark lesions with a checkpoint trained on ``milk10k``, apply its decision rule
    and write the submission to ``out``; then check the file. ``thresholds``: ``"auto"`` uses the run's
    ``thresholds.json`` (beside ``checkpoints/``) when it has one, a path that file, ``None`` no rule.
    Returns the check and what was done (lesions, rule, data root)."""
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    trained_on = (getattr(model, "checkpoint_extra", {}) or {}).get("dataset")
    if trained_on not in (None, "milk10k"):
        raise ValueError(f"{checkpoint}: trained on {trained_on!r}, not on milk10k")
    rule_path: Path | None = None
    if thresholds == "auto":
        candidate = checkpoint.parent.parent / THRESHOLDS_FILE
        rule_path = candidate if candidate.is_file() else None
        if rule_path is None:
            log.warning(
                "%s: no %s in the run: the probabilities are written as the model gives them (rare classes "
                "then seldom pass 0.5); train with eval.thresholds=true, or pass --thresholds",
                checkpoint,
                THRESHOLDS_FILE,
            )
    elif thresholds is not None:
        rule_path = Path(thresholds)
    rule = DecisionRule.load(rule_path) if rule_path is not None else None
    table, indices, _, data_cfg = checkpoint_cases(
        model, split="all", dataset=BENCHMARK, root=root, where=str(checkpoint)
    )
    preds, notes = predict_cases(
        model, table, indices, batch_size=batch_size, num_workers=num_workers, progress=progress
    )
    for note in notes:
        log.warning("%s", note)
    d = preds.diagnosis
    if rule is not None:
        if list(rule.classes) != list(d.classes):
            raise ValueError(
                f"{rule_path}: the rule's classes {rule.classes} are not the model's {list(d.classes)}"
            )
        preds.probs[d.name] = rule.apply(preds.probs[d.name])
    probs = model_probabilities(preds)
    path = write_submission(out, preds.case_ids, probs, id_column)
    metadata = find_one(Path(data_cfg.root), TEST_METADATA, BENCHMARK, "benchmark metadata")
    info = {
        "submission": str(path),
        "checkpoint": str(checkpoint),
        "lesions": len(preds.case_ids),
        "decision_rule": str(rule_path) if rule_path is not None else None,
        "data_root": str(data_cfg.root),
        "modalities": model.modalities,
    }
    return check_submission(path, metadata, id_column), info
