"""Per-case predictions of every task, their aggregation over samples, and the per-case CSV.

CSV layout (one row per case, written by :meth:`Predictions.to_csv`)::

    case_id, <task>_true, <task>_prob_<class>..., <multi>_true_<attr>..., <multi>_prob_<attr>...

A single-label ``<task>_true`` holds the class name (empty if unknown); a multi-label
``<task>_true_<attr>`` holds 0, 1 or is empty. Probabilities are written with ``repr`` so a round
trip is exact.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from remixformer.keys import IGNORE_INDEX
from remixformer.tasks import MULTI, SINGLE, TaskSpec, normalize_tasks

logger = logging.getLogger(__name__)

CASE_ID_COLUMN = "case_id"


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _to_numpy(x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (torch is not imported here); bfloat16 has no numpy dtype
        x = x.detach().cpu()
        x = (x.double() if x.is_floating_point() else x).numpy()
    return np.asarray(x, dtype=dtype)


@dataclass
class Predictions:
    """Probabilities and targets of every task for a list of samples (or cases, once aggregated).

    ``probs[task]`` is ``(N, C)``; ``targets[task]`` is int ``(N,)`` with ``-1`` for unknown
    (single-label) or float ``(N, A)`` with NaN for unknown (multi-label). A task missing from
    ``targets`` is taken as unknown for every row.
    """

    case_ids: list[str]
    tasks: tuple[TaskSpec, ...]
    probs: dict[str, np.ndarray]
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.case_ids = [str(c) for c in self.case_ids]
        self.tasks = normalize_tasks(list(self.tasks))
        n = len(self.case_ids)
        names = [t.name for t in self.tasks]
        for extra in (set(self.probs) | set(self.targets)) - set(names):
            raise ValueError(f"predictions for unknown task {extra!r}; tasks are {names}")
        probs: dict[str, np.ndarray] = {}
        targets: dict[str, np.ndarray] = {}
        for t in self.tasks:
            if t.name not in self.probs:
                raise ValueError(f"no probabilities for task {t.name!r}")
            p = _to_numpy(self.probs[t.name], np.float64)
            if p.shape != (n, t.num_classes):
                raise ValueError(
                    f"task {t.name!r}: probabilities must be ({n}, {t.num_classes}), got {p.shape}"
                )
            if not np.isfinite(p).all():
                raise ValueError(f"task {t.name!r}: probabilities contain NaN or inf")
            probs[t.name] = p
            if t.kind == SINGLE:
                y = self.targets.get(t.name)
                y = np.full(n, IGNORE_INDEX, np.int64) if y is None else _to_numpy(y, np.int64)
                if y.shape != (n,):
                    raise ValueError(f"task {t.name!r}: targets must be ({n},), got {y.shape}")
                if ((y < IGNORE_INDEX) | (y >= t.num_classes)).any():
                    raise ValueError(
                        f"task {t.name!r}: targets must be in [0, {t.num_classes}) "
                        f"or {IGNORE_INDEX} (unknown)"
                    )
            else:
                y = self.targets.get(t.name)
                y = np.full((n, t.num_classes), np.nan) if y is None else _to_numpy(y, np.float64)
                if y.shape != (n, t.num_classes):
                    raise ValueError(
                        f"task {t.name!r}: targets must be ({n}, {t.num_classes}), got {y.shape}"
                    )
                if not np.isin(y[~np.isnan(y)], (0.0, 1.0)).all():
                    raise ValueError(f"task {t.name!r}: multi-label targets must be 0, 1 or NaN")
            targets[t.name] = y
        self.probs, self.targets = probs, targets

    def __len__(self) -> int:
        return len(self.case_ids)

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"no task named {name!r}; tasks are {[t.name for t in self.tasks]}")

    @property
    def diagnosis(self) -> TaskSpec:
        """The first task, which is the diagnosis."""
        return self.tasks[0]

    # ------------------------------------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------------------------------------

    @classmethod
    def from_logits(
        cls,
        case_ids: Sequence[str],
        tasks: Sequence[TaskSpec],
        logits: Mapping[str, Any],
        targets: Mapping[str, Any] | None = None,
    ) -> Predictions:
        """Softmax (single-label) or sigmoid (multi-label) of the model's logits, in float64."""
        specs = normalize_tasks(list(tasks))
        kinds = {t.name: t.kind for t in specs}
        probs = {}
        for t in specs:
            if t.name not in logits:
                raise ValueError(f"no logits for task {t.name!r}; got {sorted(logits)}")
            x = _to_numpy(logits[t.name], np.float64)
            if x.ndim != 2:
                raise ValueError(f"task {t.name!r}: logits must be (N, {t.num_classes}), got {x.shape}")
            probs[t.name] = _softmax(x) if t.kind == SINGLE else _sigmoid(x)
        tg = {}
        for k, v in (targets or {}).items():
            if k not in kinds:
                raise ValueError(f"targets given for unknown task {k!r}; tasks are {list(kinds)}")
            tg[k] = _to_numpy(v, np.float64 if kinds[k] == MULTI else np.int64)
        return cls(list(case_ids), specs, probs, tg)

    @classmethod
    def concatenate(cls, parts: Sequence[Predictions]) -> Predictions:
        """Rows of several Predictions (for example, one per batch) with the same tasks, in order."""
        if not parts:
            raise ValueError("nothing to concatenate")
        tasks = parts[0].tasks
        for i, part in enumerate(parts[1:], start=1):
            if part.tasks != tasks:
                raise ValueError(f"part {i} has tasks {part.tasks}, expected {tasks}")
        return cls(
            [c for part in parts for c in part.case_ids],
            tasks,
            {t.name: np.concatenate([part.probs[t.name] for part in parts]) for t in tasks},
            {t.name: np.concatenate([part.targets[t.name] for part in parts]) for t in tasks},
        )

    def select(self, rows: Any) -> Predictions:
        """A new Predictions holding the given rows (slice, index array or boolean mask)."""
        idx = np.arange(len(self))[rows if isinstance(rows, slice) else np.asarray(rows)]
        return Predictions(
            [self.case_ids[i] for i in idx],
            self.tasks,
            {k: v[idx] for k, v in self.probs.items()},
            {k: v[idx] for k, v in self.targets.items()},
        )

    def aggregate_by_case(self) -> Predictions:
        """One row per case id (first-seen order) holding the mean probabilities of its samples.

        The samples of a case must carry the same targets (unknown included); a disagreement is a
        data error and raises ValueError naming the case and the task.
        """
        first_index: dict[str, int] = {}  # case id -> its group number, in first-seen order
        codes = np.empty(len(self), dtype=np.int64)
        first_rows: list[int] = []
        for i, cid in enumerate(self.case_ids):
            code = first_index.setdefault(cid, len(first_index))
            if code == len(first_rows):
                first_rows.append(i)
            codes[i] = code
        if len(first_index) == len(self):
            return self
        firsts = np.array(first_rows, dtype=np.int64)
        counts = np.bincount(codes, minlength=len(first_index)).astype(np.float64)
        probs, targets = {}, {}
        for t in self.tasks:
            p = self.probs[t.name]
            summed = np.zeros((len(first_index), p.shape[1]))
            np.add.at(summed, codes, p)
            probs[t.name] = summed / counts[:, None]
            y = self.targets[t.name]
            y_case = y[firsts]
            same = (
                (y == y_case[codes])
                if t.kind == SINGLE
                else ((y == y_case[codes]) | (np.isnan(y) & np.isnan(y_case[codes]))).all(axis=1)
            )
            if not same.all():
                row = int(np.flatnonzero(~same)[0])
                raise ValueError(
                    f"task {t.name!r}: samples of case {self.case_ids[row]!r} have different targets "
                    f"({y[row].tolist()} vs {y_case[codes[row]].tolist()})"
                )
            targets[t.name] = y_case
        logger.debug("aggregated %d samples into %d cases", len(self), len(first_index))
        return Predictions(list(first_index), self.tasks, probs, targets)

    # ------------------------------------------------------------------------------------------------
    # CSV
    # ------------------------------------------------------------------------------------------------

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the per-case CSV (layout in the module docstring); returns the path."""
        path = Path(path)
        header = csv_header(self.tasks)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for i, cid in enumerate(self.case_ids):
                row: list[str] = [cid]
                for t in self.tasks:
                    y, p = self.targets[t.name][i], self.probs[t.name][i]
                    if t.kind == SINGLE:
                        row.append("" if y == IGNORE_INDEX else t.classes[int(y)])
                    else:
                        row.extend("" if math.isnan(v) else str(int(v)) for v in y)
                    row.extend(repr(float(v)) for v in p)
                w.writerow(row)
        return path

    @classmethod
    def read_csv(cls, path: str | os.PathLike[str], tasks: Sequence[TaskSpec] | None = None) -> Predictions:
        """Read a per-case CSV. Without ``tasks`` the task names, kinds and classes are read from the
        header; pass them when known, since a name containing ``_true``/``_prob_`` can be ambiguous."""
        path = Path(path)
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        return cls.from_csv_rows(rows, path, tasks)

    @classmethod
    def from_csv_text(
        cls, text: str, source: str = "<text>", tasks: Sequence[TaskSpec] | None = None
    ) -> Predictions:
        """:meth:`read_csv` of a file's text (e.g. an upload); ``source`` names it in messages."""
        return cls.from_csv_rows(list(csv.reader(io.StringIO(text, newline=""))), source, tasks)

    @classmethod
    def from_csv_rows(
        cls, rows: list[list[str]], path: str | os.PathLike[str], tasks: Sequence[TaskSpec] | None = None
    ) -> Predictions:
        """The per-case CSV's rows (header first) parsed; ``path`` names the file in messages."""
        if not rows:
            raise ValueError(f"{path}: empty file, expected a header starting with {CASE_ID_COLUMN!r}")
        header = rows[0]
        specs = normalize_tasks(list(tasks)) if tasks is not None else infer_tasks(header, path)
        expected = csv_header(specs)
        if header != expected:
            missing = [c for c in expected if c not in header]
            extra = [c for c in header if c not in expected]
            raise ValueError(
                f"{path}: columns do not match the tasks; missing {missing}, unexpected {extra}"
                + ("" if missing or extra else " (order differs)")
            )
        body = rows[1:]
        n = len(body)
        probs = {t.name: np.empty((n, t.num_classes)) for t in specs}
        targets = {
            t.name: np.empty(n, np.int64) if t.kind == SINGLE else np.empty((n, t.num_classes)) for t in specs
        }
        for r, row in enumerate(body):
            line = r + 2
            if len(row) != len(header):
                raise ValueError(f"{path}: row {line} has {len(row)} fields, expected {len(header)}")
            col = 1
            for t in specs:
                if t.kind == SINGLE:
                    value = row[col]
                    if value == "":
                        targets[t.name][r] = IGNORE_INDEX
                    elif value in t.classes:
                        targets[t.name][r] = t.classes.index(value)
                    else:
                        raise ValueError(
                            f"{path}: row {line}, column {header[col]!r}: {value!r} is not one of "
                            f"{list(t.classes)} (or empty for unknown)"
                        )
                    col += 1
                else:
                    for j in range(t.num_classes):
                        targets[t.name][r, j] = _parse_binary(row[col], path, line, header[col])
                        col += 1
                for j in range(t.num_classes):
                    probs[t.name][r, j] = _parse_float(row[col], path, line, header[col])
                    col += 1
        return cls([row[0] for row in body], specs, probs, targets)


def csv_header(tasks: Sequence[TaskSpec]) -> list[str]:
    """Column names of the per-case CSV for these tasks."""
    header = [CASE_ID_COLUMN]
    for t in tasks:
        if t.kind == SINGLE:
            header.append(f"{t.name}_true")
        else:
            header.extend(f"{t.name}_true_{a}" for a in t.classes)
        header.extend(f"{t.name}_prob_{c}" for c in t.classes)
    if len(set(header)) != len(header):
        raise ValueError(f"task and class names give repeated CSV columns: {header}")
    return header


def infer_tasks(header: Sequence[str], path: str | os.PathLike[str] = "<csv>") -> tuple[TaskSpec, ...]:
    """Task specs read from a per-case CSV header (single-label tasks have a ``<task>_true`` column)."""
    if not header or header[0] != CASE_ID_COLUMN:
        raise ValueError(f"{path}: the first column must be {CASE_ID_COLUMN!r}, got {list(header[:1])}")
    cols = list(header[1:])
    specs: list[TaskSpec] = []
    i = 0
    while i < len(cols):
        c = cols[i]
        if c.endswith("_true"):
            name, kind = c[: -len("_true")], SINGLE
            i += 1
        elif "_true_" in c:
            name, kind = c.split("_true_", 1)[0], MULTI
            attrs = []
            while i < len(cols) and cols[i].startswith(f"{name}_true_"):
                attrs.append(cols[i][len(f"{name}_true_") :])
                i += 1
        else:
            raise ValueError(f"{path}: column {c!r} is neither '<task>_true' nor '<task>_true_<attribute>'")
        classes = []
        while i < len(cols) and cols[i].startswith(f"{name}_prob_"):
            classes.append(cols[i][len(f"{name}_prob_") :])
            i += 1
        if kind == MULTI and classes != attrs:
            raise ValueError(
                f"{path}: task {name!r}: true columns {attrs} do not match probability columns {classes}"
            )
        specs.append(TaskSpec(name, tuple(classes), kind))
    if not specs:
        raise ValueError(f"{path}: no task columns after {CASE_ID_COLUMN!r}")
    return tuple(specs)


def _parse_float(value: str, path: Path, line: int, column: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise ValueError(
            f"{path}: row {line}, column {column!r}: expected a probability, got {value!r}"
        ) from None
    if not math.isfinite(v):
        raise ValueError(
            f"{path}: row {line}, column {column!r}: expected a finite probability, got {value!r}"
        )
    return v


def _parse_binary(value: str, path: Path, line: int, column: str) -> float:
    if value == "":
        return float("nan")
    if value in ("0", "1", "0.0", "1.0"):
        return float(value)
    raise ValueError(f"{path}: row {line}, column {column!r}: expected 0, 1 or empty, got {value!r}")
