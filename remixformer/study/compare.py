"""The admin's comparison of the readers with the model (the paper's Fig. 11), once the study is closed.

The model's answers never come from this application: the admin gives the ``predictions.csv`` that
``remixformer evaluate`` wrote for the study's cases (``readers serve --predictions`` or the upload
form of the admin page). It is checked against the study (same diagnosis classes, every study case
present) and stored in the database; readers never see it. The comparison is
:func:`remixformer.explain.readers.compare_reader_stages` on the study's answers: the same numbers
``remixformer analyze readers`` gives on the exported reader CSV.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

from remixformer.evaluation.predictions import Predictions
from remixformer.explain.readers import ReaderAnswer, ReaderStudy, compare_reader_stages
from remixformer.keys import IGNORE_INDEX
from remixformer.study.study import Study, StudyError

log = logging.getLogger(__name__)


@dataclass
class StudyComparison:
    """The per-stage comparison, its figures as PNG bytes, and notes."""

    comparison: Any  # remixformer.explain.readers.StageComparison
    predictions_name: str
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return self.comparison.rows()


def check_predictions(study: Study, text: str, name: str) -> tuple[Any, list[str]]:
    """Parse a predictions CSV and check it fits the study; returns (Predictions, notes).

    Refused (``StudyError``): not a predictions CSV, other diagnosis classes, study cases missing.
    Noted: a case whose true diagnosis there differs from the study's label.
    """
    try:
        preds = Predictions.from_csv_text(text, name).aggregate_by_case()
    except ValueError as e:
        raise StudyError(f"not a predictions CSV of `remixformer evaluate`: {e}") from None
    classes = tuple(preds.diagnosis.classes)
    if classes != tuple(study.classes):
        raise StudyError(
            f"{name}: the model's diagnosis classes are {list(classes)}, the study's are "
            f"{list(study.classes)}; expected the same classes in the same order"
        )
    labels = study.labels()
    missing = [c for c in labels if c not in set(preds.case_ids)]
    if missing:
        raise StudyError(
            f"{name}: {len(missing)} of the study's {len(labels)} cases have no prediction "
            f"(first: {', '.join(missing[:5])}); expected predictions for every study case"
        )
    notes = []
    y = preds.targets[preds.diagnosis.name]
    row = {c: i for i, c in enumerate(preds.case_ids)}
    differ = []
    for cid, label in labels.items():
        t = int(y[row[cid]])
        theirs = None if t == IGNORE_INDEX else classes[t]
        if theirs != label:
            differ.append(f"{cid} ({label} in the study, {theirs} in the predictions)")
    if differ:
        notes.append(
            f"{len(differ)} case(s) have another true diagnosis in the predictions than in the study; the "
            f"comparison scores against the predictions' labels: {', '.join(differ[:5])}"
        )
    return preds, notes


def compare_study(study: Study) -> StudyComparison:
    """Readers against the model, stage by stage, with the figures (needs the stored predictions and
    at least one answer on a labelled case)."""
    stored = study.predictions_csv()
    if stored is None:
        raise StudyError(
            "no model predictions yet: upload the predictions.csv of `remixformer evaluate` for the study's "
            "cases (or start the server with --predictions)"
        )
    name, text = stored
    preds, notes = check_predictions(study, text, name)
    rows = study.answer_rows()
    if not rows:
        raise StudyError("no answers yet")
    answers = [
        ReaderAnswer(r["reader_id"], r["group"], r["case_id"], r["answer"], i + 2, r["stage"])
        for i, r in enumerate(rows)
    ]
    readers = ReaderStudy(answers, tuple(study.classes), "the study's answers")
    try:
        cmp = compare_reader_stages(preds, readers)
    except ValueError as e:
        raise StudyError(str(e)) from None
    out = StudyComparison(cmp, name, notes=notes)
    for stage, one in cmp.by_stage.items():
        out.notes.extend(f"stage {stage}: {n}" for n in one.notes)
    out.figures["stages"] = _png(cmp.figure())
    for stage, one in cmp.by_stage.items():
        n = len(one.case_ids)
        out.figures[f"roc_{stage}"] = _png(
            one.roc_figure(title=f"Stage {stage}: model ROC per class and readers' points ({n} cases)")
        )
        out.figures[f"accuracy_{stage}"] = _png(
            one.accuracy_figure(title=f"Stage {stage}: readers' accuracy (+ = group mean) and the model's")
        )
    return out


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
