"""Reader study (the paper's Fig. 11b): the model's ROC curves against dermatologists' answers.

Reader answers are a CSV with the columns ``reader_id, group, case_id, answer`` (any order) and,
optionally, ``stage``: one row per (reader, case[, stage]), ``group`` the reader's level
("specialist", "resident", ...), ``answer`` a diagnosis class name of the model, ``stage`` the
modalities the reader saw when answering (e.g. ``C``, ``CM``, ``CDM``, the paper's Fig. 11 reading
order; ``remixformer readers export`` writes it). :func:`read_reader_csv` is strict: every problem
raises :class:`ReaderFileError` naming the file, the 1-based line and the column.

A reader's operating point on class ``c`` treats the answers as a one-vs-rest decision over the cases
the reader answered: sensitivity = answered ``c`` among cases of class ``c``, specificity = answered
something else among the other cases. A group's point is the mean of its readers' points (NaN-skipping).
Accuracy is the share of correct answers; the model's accuracy (argmax, ties wrong) is given on all
the study's cases and on each reader's own cases (a paired comparison). A file with stages is compared
one stage at a time (:func:`compare_reader_stages`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from remixformer.evaluation import metrics as M
from remixformer.evaluation.plots import OperatingPoint, plot_roc_curves, save_figure
from remixformer.evaluation.report import to_jsonable
from remixformer.explain.figures import plot_reader_accuracy, plot_reader_stages
from remixformer.keys import IGNORE_INDEX

log = logging.getLogger(__name__)

READER_COLUMNS = ("reader_id", "group", "case_id", "answer")
STAGE_COLUMN = "stage"  # optional: the modalities shown when the reader answered (C, CM, CDM, ...)


class ReaderFileError(ValueError):
    """A malformed reader CSV; the message names the file, the line and the column."""


@dataclass(frozen=True)
class ReaderAnswer:
    reader_id: str
    group: str
    case_id: str
    answer: str
    line: int  # 1-based line of the file
    stage: str = ""  # "" when the file has no stage column


@dataclass
class ReaderStudy:
    """The parsed answers, in file order, and the class names they were checked against."""

    answers: list[ReaderAnswer]
    classes: tuple[str, ...]
    source: str = ""

    @property
    def readers(self) -> dict[str, str]:
        """reader id -> group, in order of first appearance."""
        return {a.reader_id: a.group for a in self.answers}

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(a.group for a in self.answers))

    @property
    def case_ids(self) -> list[str]:
        return list(dict.fromkeys(a.case_id for a in self.answers))

    @property
    def stages(self) -> list[str]:
        """Stages in order of first appearance; empty when the file has no stage column."""
        return [s for s in dict.fromkeys(a.stage for a in self.answers) if s]

    def for_stage(self, stage: str) -> ReaderStudy:
        """The answers given at one stage (every answer of a file without stages for ``""``)."""
        known = self.stages
        if stage not in known and not (stage == "" and not known):
            raise ValueError(f"{self.source}: no answers at stage {stage!r}; the stages are {known}")
        return ReaderStudy([a for a in self.answers if a.stage == stage], self.classes, self.source)


def read_reader_csv(
    path: str | os.PathLike[str], classes: Sequence[str], case_ids: Sequence[str] | None = None
) -> ReaderStudy:
    """Parse a reader CSV. ``classes``: allowed answers; ``case_ids``: known cases (None: any).

    Rejected, with the file, line and column: missing, unknown or repeated columns; a row with too
    many or too few fields; an empty value; an answer that is not a class name; an unknown case id; a
    second answer of a reader to a case (at the same stage, when there is a ``stage`` column); a reader
    listed in two groups; a file without answers. Blank lines are skipped; surrounding spaces are
    removed.
    """
    path = Path(path)
    classes = tuple(str(c) for c in classes)
    known_cases = None if case_ids is None else {str(c) for c in case_ids}
    lower = {c.lower(): c for c in classes}

    def fail(line: int, column: str | None, message: str) -> ReaderFileError:
        where = f"{path}: line {line}" + (f", column {column!r}" if column else "")
        return ReaderFileError(f"{where}: {message}")

    try:
        f = path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such reader file") from None
    with f:
        reader = csv.reader(f)
        header: list[str] = []
        while not any(h.strip() for h in header):  # blank lines before the header are skipped
            try:
                header = next(reader)
            except StopIteration:
                raise ReaderFileError(
                    f"{path}: empty file; expected a header {','.join(READER_COLUMNS)}"
                ) from None
            except (csv.Error, UnicodeDecodeError) as e:
                raise fail(reader.line_num or 1, None, f"unreadable ({e})") from None
        header_line = reader.line_num
        header = [h.strip() for h in header]
        repeated = sorted({h for h in header if header.count(h) > 1})
        missing = [c for c in READER_COLUMNS if c not in header]
        extra = [h for h in header if h not in (*READER_COLUMNS, STAGE_COLUMN)]
        if repeated or missing or extra:
            parts = []
            if missing:
                parts.append(f"missing column(s) {missing}")
            if extra:
                parts.append(f"unknown column(s) {extra}")
            if repeated:
                parts.append(f"repeated column(s) {repeated}")
            raise fail(
                header_line,
                None,
                "; ".join(parts)
                + f"; the columns are {list(READER_COLUMNS)} and optionally {STAGE_COLUMN!r}",
            )
        columns = (*READER_COLUMNS, STAGE_COLUMN) if STAGE_COLUMN in header else READER_COLUMNS
        col = {name: header.index(name) for name in columns}
        answers: list[ReaderAnswer] = []
        seen: dict[tuple[str, str, str], int] = {}
        group_of: dict[str, tuple[str, int]] = {}
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as e:
                raise fail(reader.line_num, None, f"unreadable ({e})") from None
            line = reader.line_num
            if not row or all(not v.strip() for v in row):
                continue
            if len(row) != len(header):
                raise fail(line, None, f"{len(row)} field(s), expected {len(header)} ({', '.join(header)})")
            values = {name: row[i].strip() for name, i in col.items()}
            for name in columns:
                if not values[name]:
                    raise fail(line, name, "empty value")
            rid, group, cid, answer = (values[c] for c in READER_COLUMNS)
            stage = values.get(STAGE_COLUMN, "")
            if answer not in classes:
                hint = f" (did you mean {lower[answer.lower()]!r}?)" if answer.lower() in lower else ""
                raise fail(
                    line, "answer", f"{answer!r} is not a class name{hint}; classes are {list(classes)}"
                )
            if known_cases is not None and cid not in known_cases:
                raise fail(line, "case_id", f"unknown case id {cid!r} (not among the model's predictions)")
            if (rid, cid, stage) in seen:
                at = f" at stage {stage!r}" if stage else ""
                raise fail(
                    line,
                    "case_id",
                    f"reader {rid!r} already answered case {cid!r}{at} on line {seen[rid, cid, stage]}",
                )
            seen[rid, cid, stage] = line
            g, g_line = group_of.setdefault(rid, (group, line))
            if g != group:
                raise fail(
                    line, "group", f"reader {rid!r} is in group {g!r} on line {g_line}, here {group!r}"
                )
            answers.append(ReaderAnswer(rid, group, cid, answer, line, stage))
    if not answers:
        raise ReaderFileError(f"{path}: no answers after the header")
    return ReaderStudy(answers, classes, str(path))


# ----------------------------------------------------------------------------------------------------
# Comparison with the model
# ----------------------------------------------------------------------------------------------------


@dataclass
class ReaderComparison:
    """Everything of one reader study against the model's predictions (see :func:`compare_readers`)."""

    classes: list[str]
    focus: str | None  # the one class of a one-vs-rest comparison, or None for every class
    case_ids: list[str]  # cases of the ROC curves
    y_true: np.ndarray  # (N,) class index of those cases
    probs: np.ndarray  # (N, C) model probabilities
    points: list[dict[str, Any]]  # per reader and class: sensitivity, specificity, counts
    group_points: list[dict[str, Any]]  # per group and class: mean sensitivity, specificity
    reader_accuracy: list[dict[str, Any]]  # per reader: accuracy, the model's on the same cases
    group_accuracy: list[dict[str, Any]]  # per group: mean, std, n readers, the model's
    model: dict[str, Any]  # accuracy and AUC per class on the study's cases
    notes: list[str] = field(default_factory=list)

    def operating_points(self) -> list[Any]:
        """:class:`~remixformer.evaluation.plots.OperatingPoint` of every reader and group mean."""
        out = []
        for p in self.points:
            if np.isnan(p["sensitivity"]) or np.isnan(p["specificity"]):
                continue
            out.append(OperatingPoint(p["class"], p["sensitivity"], p["specificity"], group=p["group"]))
        for p in self.group_points:
            if np.isnan(p["sensitivity"]) or np.isnan(p["specificity"]):
                continue
            out.append(
                OperatingPoint(p["class"], p["sensitivity"], p["specificity"], group=f"{p['group']} (mean)")
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "classes": self.classes,
                "class": self.focus,
                "n_cases": len(self.case_ids),
                "model": self.model,
                "group_accuracy": self.group_accuracy,
                "reader_accuracy": self.reader_accuracy,
                "group_points": self.group_points,
                "reader_points": self.points,
                "notes": self.notes,
            }
        )

    def roc_figure(self, title: str | None = None) -> Any:
        """The model's ROC curves (one panel per class, or the one class) with the readers' points."""
        ops = self.operating_points()
        if self.focus is not None:
            c = self.classes.index(self.focus)
            return plot_roc_curves(
                (self.y_true == c).astype(np.float64)[:, None],
                self.probs[:, [c]],
                [self.focus],
                operating_points=ops,
                title=title or f"{self.focus} vs rest: model ROC and readers ({len(self.case_ids)} cases)",
            )
        return plot_roc_curves(
            self.y_true,
            self.probs,
            self.classes,
            operating_points=ops,
            panels=True,
            title=title or f"Model ROC per class and readers ({len(self.case_ids)} cases)",
        )

    def accuracy_figure(self, title: str | None = None) -> Any:
        """Each reader's accuracy, a box per group, and the model's (Fig. 11b, right)."""
        return plot_reader_accuracy(self.reader_accuracy, self.model["accuracy"], title=title)

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write readers_roc.png, readers_accuracy.png, reader_points.csv, reader_accuracy.csv,
        reader_groups.csv and readers.json into ``out_dir``; returns ``{name: path}``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        written["readers_roc.png"] = save_figure(self.roc_figure(), out / "readers_roc.png")
        written["readers_accuracy.png"] = save_figure(self.accuracy_figure(), out / "readers_accuracy.png")
        written["reader_points.csv"] = _write_rows(
            out / "reader_points.csv",
            [
                "reader_id",
                "group",
                "class",
                "n_cases",
                "n_positive",
                "n_negative",
                "sensitivity",
                "specificity",
            ],
            [*self.points, *({**p, "reader_id": f"{p['group']} (mean)"} for p in self.group_points)],
        )
        written["reader_accuracy.csv"] = _write_rows(
            out / "reader_accuracy.csv",
            ["reader_id", "group", "n_cases", "accuracy", "model_accuracy_same_cases"],
            self.reader_accuracy,
        )
        written["reader_groups.csv"] = _write_rows(
            out / "reader_groups.csv",
            ["group", "n_readers", "mean_accuracy", "std_accuracy", "model_accuracy_same_cases"],
            [
                *self.group_accuracy,
                {"group": "model", "n_readers": "", "mean_accuracy": self.model["accuracy"]},
            ],
        )
        path = out / "readers.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        written["readers.json"] = path
        return written


def _write_rows(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(r.get(c, "")) for c in columns])
    return path


def _cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else repr(float(v))
    return str(v)


def _mean_std(values: Sequence[Any]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")


def compare_readers(
    predictions: Any, study: ReaderStudy, *, cls: str | None = None, all_cases: bool = False
) -> ReaderComparison:
    """Readers against the model's diagnosis predictions (a :class:`Predictions`, aggregated by case).

    ``cls``: one class for a one-vs-rest comparison (default: every class). The ROC curves use the
    cases the readers answered (``all_cases``: every case of the predictions). Cases whose true
    diagnosis is unknown are left out with a note. A study with several stages is compared one stage
    at a time (:meth:`ReaderStudy.for_stage`, or :func:`compare_reader_stages`).
    """
    if len(study.stages) > 1:
        raise ValueError(
            f"{study.source}: the answers are from {len(study.stages)} stages {study.stages}; "
            "compare one stage at a time (--stage) or all of them with compare_reader_stages"
        )

    preds = predictions.aggregate_by_case()
    task = preds.diagnosis
    classes = list(task.classes)
    if tuple(classes) != tuple(study.classes):
        raise ValueError(
            f"the reader answers were checked against {list(study.classes)}, the model has {classes}"
        )
    if cls is not None and cls not in classes:
        raise ValueError(f"--class {cls!r} is not one of the model's classes {classes}")
    row_of = {c: i for i, c in enumerate(preds.case_ids)}
    missing = [a for a in study.answers if a.case_id not in row_of]
    if missing:
        a = missing[0]
        raise ReaderFileError(
            f"{study.source}: line {a.line}, column 'case_id': unknown case id {a.case_id!r} "
            f"(not among the model's predictions; {len(missing)} answer(s) in all)"
        )
    y_all, p_all = preds.targets[task.name], preds.probs[task.name]
    pred_all = M.predicted_labels(p_all)
    notes: list[str] = []
    unknown = sorted({a.case_id for a in study.answers if y_all[row_of[a.case_id]] == IGNORE_INDEX})
    if unknown:
        notes.append(f"{len(unknown)} case(s) without a known diagnosis left out: {', '.join(unknown[:10])}")
        log.warning("reader study: %s", notes[-1])
    answers = [a for a in study.answers if y_all[row_of[a.case_id]] != IGNORE_INDEX]
    if not answers:
        raise ValueError("no reader answer is on a case with a known diagnosis")
    study_cases = list(dict.fromkeys(a.case_id for a in answers))
    roc_cases = [c for c in preds.case_ids if y_all[row_of[c]] != IGNORE_INDEX] if all_cases else study_cases
    rows = np.asarray([row_of[c] for c in roc_cases])
    focus = [cls] if cls is not None else classes

    by_reader: dict[str, list[ReaderAnswer]] = {}
    for a in answers:
        by_reader.setdefault(a.reader_id, []).append(a)
    points, accuracy = [], []
    for rid, ans in by_reader.items():
        truth = np.asarray([y_all[row_of[a.case_id]] for a in ans])
        said = np.asarray([classes.index(a.answer) for a in ans])
        model_said = np.asarray([pred_all[row_of[a.case_id]] for a in ans])
        for name in focus:
            c = classes.index(name)
            pos, neg = truth == c, truth != c
            points.append(
                {
                    "reader_id": rid,
                    "group": ans[0].group,
                    "class": name,
                    "n_cases": len(ans),
                    "n_positive": int(pos.sum()),
                    "n_negative": int(neg.sum()),
                    "sensitivity": float((said[pos] == c).mean()) if pos.any() else float("nan"),
                    "specificity": float((said[neg] != c).mean()) if neg.any() else float("nan"),
                }
            )
        accuracy.append(
            {
                "reader_id": rid,
                "group": ans[0].group,
                "n_cases": len(ans),
                "accuracy": float((said == truth).mean()),
                "model_accuracy_same_cases": float((model_said == truth).mean()),
            }
        )
    groups = list(dict.fromkeys(a.group for a in answers))
    group_points = []
    for g in groups:
        for name in focus:
            mine = [p for p in points if p["group"] == g and p["class"] == name]
            group_points.append(
                {
                    "group": g,
                    "class": name,
                    "n_readers": len(mine),
                    "sensitivity": _mean_std([p["sensitivity"] for p in mine])[0],
                    "specificity": _mean_std([p["specificity"] for p in mine])[0],
                }
            )
    group_accuracy = []
    for g in groups:
        mine = [r for r in accuracy if r["group"] == g]
        mean, std = _mean_std([r["accuracy"] for r in mine])
        group_accuracy.append(
            {
                "group": g,
                "n_readers": len(mine),
                "mean_accuracy": mean,
                "std_accuracy": std,
                "model_accuracy_same_cases": _mean_std([r["model_accuracy_same_cases"] for r in mine])[0],
            }
        )
    y, p = y_all[rows], p_all[rows]
    model = {
        "n_cases": len(roc_cases),
        "accuracy": M.accuracy(y, p),
        "auc": {name: M.binary_auc(y == classes.index(name), p[:, classes.index(name)]) for name in focus},
        "cases": "every labelled case of the predictions" if all_cases else "the cases the readers answered",
    }
    return ReaderComparison(
        classes=classes,
        focus=cls,
        case_ids=roc_cases,
        y_true=y,
        probs=p,
        points=points,
        group_points=group_points,
        reader_accuracy=accuracy,
        group_accuracy=group_accuracy,
        model=model,
        notes=notes,
    )


# ----------------------------------------------------------------------------------------------------
# Stages (the paper's Fig. 11a reading order: photo, photo + metadata, all three)
# ----------------------------------------------------------------------------------------------------

STAGE_SUMMARY_COLUMNS = (
    "stage",
    "group",
    "n_readers",
    "n_answers",
    "mean_accuracy",
    "std_accuracy",
    "model_accuracy_same_cases",
)


@dataclass
class StageComparison:
    """One :class:`ReaderComparison` per stage, in the stages' order, and their summary."""

    by_stage: dict[str, ReaderComparison]

    def rows(self) -> list[dict[str, Any]]:
        """Per stage and group: readers, answers, mean and std accuracy, the model's on their cases;
        then per stage the model's accuracy on the stage's cases (group ``model``)."""
        out = []
        for stage, cmp in self.by_stage.items():
            for g in cmp.group_accuracy:
                n = sum(r["n_cases"] for r in cmp.reader_accuracy if r["group"] == g["group"])
                out.append({"stage": stage, **g, "n_answers": n})
            out.append(
                {
                    "stage": stage,
                    "group": "model",
                    "n_readers": "",
                    "n_answers": cmp.model["n_cases"],
                    "mean_accuracy": cmp.model["accuracy"],
                    "std_accuracy": float("nan"),
                    "model_accuracy_same_cases": cmp.model["accuracy"],
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "stages": list(self.by_stage),
                "summary": self.rows(),
                "by_stage": {k: v.to_dict() for k, v in self.by_stage.items()},
            }
        )

    def figure(self, title: str | None = None) -> Any:
        """Accuracy by stage: each group's mean (error bar: std over readers), each reader as a dot,
        the model on the study's cases as a dashed line (the paper's Fig. 11a)."""
        readers = [{**r, "stage": stage} for stage, cmp in self.by_stage.items() for r in cmp.reader_accuracy]
        model = {stage: cmp.model["accuracy"] for stage, cmp in self.by_stage.items()}
        return plot_reader_stages(readers, list(self.by_stage), model, title=title)

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Each stage's files (:meth:`ReaderComparison.save`) in ``<out>/<stage>/``, plus
        ``reader_stages.csv``, ``readers_stages.png`` and ``reader_stages.json`` in ``out``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for stage, cmp in self.by_stage.items():
            folder = stage_folder(stage)
            for name, path in cmp.save(out / folder).items():
                written[f"{folder}/{name}"] = path
        written["reader_stages.csv"] = _write_rows(
            out / "reader_stages.csv", STAGE_SUMMARY_COLUMNS, self.rows()
        )
        written["readers_stages.png"] = save_figure(self.figure(), out / "readers_stages.png")
        path = out / "reader_stages.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        written["reader_stages.json"] = path
        return written


def stage_folder(stage: str) -> str:
    """A folder name for a stage: letters, digits, ``-`` and ``_`` kept, anything else ``_``."""
    name = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in stage)
    return f"stage_{name}"


def compare_reader_stages(
    predictions: Any, study: ReaderStudy, *, cls: str | None = None, all_cases: bool = False
) -> StageComparison:
    """:func:`compare_readers` at every stage of ``study`` (a file without stages is one stage ``""``)."""
    by_stage = {
        stage: compare_readers(predictions, study.for_stage(stage), cls=cls, all_cases=all_cases)
        for stage in study.stages or [""]
    }
    return StageComparison(by_stage)
