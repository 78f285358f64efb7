"""Accuracy by modality subset across folds or seeds (the paper's Fig. 11a for the model, Table XIV).

Inputs are outputs of the project's commands: a ``remixformer cv`` run (its folder or its
``cv_results.json``: one value per fold) or a ``remixformer evaluate`` report (its folder or its
``report.json``: one value). Inputs with the same label are pooled, so several evaluate reports of
one subset trained with different seeds make one bar. A label is given by the caller or read from
the input: the ``model.modalities`` of a cv run's config, or the ``modalities`` field of a report less
its ``withheld`` field; the folder name otherwise.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from remixformer.evaluation.plots import plot_fold_comparison, save_figure
from remixformer.evaluation.report import to_jsonable
from remixformer.evaluation.stats import PAPER_HEADINGS, cv_table, load_cv_results, mean_std
from remixformer.modalities import parse_modalities

log = logging.getLogger(__name__)

CV_FILE = "cv_results.json"
REPORT_FILE = "report.json"


@dataclass
class ModalityComparison:
    """``values[label]``: the metric of each fold or seed; ``sources[label]``: where each came from."""

    metric: str
    values: dict[str, list[float]]
    sources: dict[str, list[str]]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for label, v in self.values.items():
            mean, std, n = mean_std(v)
            out[label] = {"mean": mean, "std": std, "n": n}
        return out

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "metric": self.metric,
                "summary": self.summary(),
                "values": self.values,
                "sources": self.sources,
                "notes": self.notes,
            }
        )

    def table(self, reference: str | None = None) -> str:
        """Markdown mean ± std per label; with ``reference`` a paired t-test column (same counts)."""
        runs = {label: [{self.metric: x} for x in v] for label, v in self.values.items()}
        return cv_table(runs, [self.metric], reference=reference, test_metric=self.metric)

    def save(self, out_dir: str | os.PathLike[str], *, reference: str | None = None) -> dict[str, Path]:
        """Write modalities.png, modalities.csv, modalities.json and modalities.md into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        heading = PAPER_HEADINGS.get(self.metric, self.metric)
        counts = {label: len(v) for label, v in self.values.items()}
        fig = plot_fold_comparison(
            self.values,
            metric_label=f"{heading} (%)",
            title=f"{heading} by modality subset (mean ± std over "
            + ("folds/seeds" if max(counts.values()) > 1 else "runs")
            + ")",
        )
        written = {"modalities.png": save_figure(fig, out / "modalities.png")}
        path = out / "modalities.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["label", "source", self.metric])
            for label, v in self.values.items():
                for x, src in zip(v, self.sources[label]):
                    w.writerow([label, src, "" if np.isnan(x) else repr(float(x))])
        written["modalities.csv"] = path
        path = out / "modalities.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        written["modalities.json"] = path
        path = out / "modalities.md"
        try:
            table = self.table(reference)
        except ValueError as e:  # the t-test needs paired counts; keep the table without it
            self.notes.append(f"no paired t-test: {e}")
            log.warning("modalities: no paired t-test: %s", e)
            table = self.table(None)
        path.write_text(
            f"# {heading} by modality subset\n\n{table}\n" + "".join(f"- {n}\n" for n in self.notes),
            encoding="utf-8",
        )
        written["modalities.md"] = path
        return written


def _resolve(path: Path) -> tuple[str, Path]:
    """("cv" | "report", file) of an input given as a folder or a file."""
    if path.is_dir():
        for kind, name in (("cv", CV_FILE), ("report", REPORT_FILE)):
            if (path / name).is_file():
                return kind, path / name
        raise FileNotFoundError(
            f"{path}: holds neither {CV_FILE} (remixformer cv) nor {REPORT_FILE} (evaluate)"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file or folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if isinstance(data, dict) and "folds" in data:
        return "cv", path
    if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
        return "report", path
    raise ValueError(f"{path}: neither a cv_results.json ('folds') nor an evaluate report.json ('metrics')")


# Reports written before report.json had the fields `modalities` and `withheld` say them only in their
# prose notes; these read them there (the notes' wording of that release).
_MODALITIES_NOTE = re.compile(r"model modalities:\s*([CDM]+)")
_WITHHELD_NOTE = re.compile(r"withheld modality:\s*([CDM]+)")


def _label_of(kind: str, file: Path, data: dict[str, Any]) -> str:
    if kind == "cv":
        mods = ((data.get("config") or {}).get("model") or {}).get("modalities")
        if isinstance(mods, str) and mods:
            return mods
    elif isinstance(data.get("modalities"), str) and data["modalities"]:
        withheld = data.get("withheld") or ""
        return "".join(x for x in parse_modalities(data["modalities"]) if x not in withheld.upper())
    else:  # a report of the earlier release: the modalities are in the notes only
        notes = " ".join(str(n) for n in data.get("notes", []))
        m = _MODALITIES_NOTE.search(notes)
        if m:
            mods = m.group(1)
            w = _WITHHELD_NOTE.search(notes)
            return "".join(x for x in mods if not (w and x in w.group(1)))
    return file.parent.name


def load_modality_results(
    inputs: Sequence[str | os.PathLike[str]], labels: Sequence[str] | None = None, metric: str = "accuracy"
) -> ModalityComparison:
    """The metric of each input's folds (cv) or of the report (evaluate), grouped by label.

    ``labels``: one per input (inputs sharing a label are pooled), or None to read them from the inputs.
    """
    if not inputs:
        raise ValueError("no inputs: give cv run folders, cv_results.json or evaluate report.json files")
    if labels is not None and len(labels) != len(inputs):
        raise ValueError(f"{len(labels)} label(s) for {len(inputs)} input(s); give one label per input")
    values: dict[str, list[float]] = {}
    sources: dict[str, list[str]] = {}
    notes: list[str] = []
    for i, raw in enumerate(inputs):
        kind, file = _resolve(Path(raw))
        data = json.loads(file.read_text(encoding="utf-8"))
        label = labels[i] if labels is not None else _label_of(kind, file, data)
        if kind == "cv":
            folds = load_cv_results(file)
            for k, m in folds.items():
                if metric not in m:
                    raise ValueError(
                        f"{file}: fold {k} has no metric {metric!r}; it has {sorted(m)[:20]} ..."
                    )
                values.setdefault(label, []).append(float("nan") if m[metric] is None else float(m[metric]))
                sources.setdefault(label, []).append(f"{file} fold {k}")
        else:
            summary = data["metrics"].get("summary")
            if not isinstance(summary, dict) or metric not in summary:
                raise ValueError(f"{file}: no metric {metric!r} in metrics.summary")
            v = summary[metric]
            values.setdefault(label, []).append(float("nan") if v is None else float(v))
            sources.setdefault(label, []).append(str(file))
            for n in data.get("notes", []):
                if "withheld" in str(n):
                    notes.append(f"{label}: {file}: {n}")
    for label, v in values.items():
        if all(np.isnan(v)):
            notes.append(f"{label}: {metric} is undefined in every input")
    return ModalityComparison(metric, values, sources, notes)
