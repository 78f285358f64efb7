"""Evaluation of a :class:`Predictions` object: nested metrics, data-set tables, and the report files.

:func:`evaluate_predictions` returns a JSON-safe dict (undefined values are ``None``);
:func:`write_report` writes ``report.md``, ``report.json``, ``predictions.csv`` and the figures.
Derm7pt's Table VI/VIII layouts and ISIC 2017's score are computed when the tasks (Derm7pt) or the
data set name (ISIC 2017) say so; ``docs/evaluation.md`` defines every number.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from remixformer.evaluation import metrics as M
from remixformer.evaluation import plots
from remixformer.evaluation.predictions import Predictions
from remixformer.tasks import SINGLE, TaskSpec

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# Derm7pt layouts (task names and class names as in docs/datasets.md; classes matched case-insensitively)
# ----------------------------------------------------------------------------------------------------

DERM7PT_DIAG_TASK = "diag"
DERM7PT_DIAG_CLASSES = ("BCC", "NEV", "MEL", "MISC", "SK")
# task -> (column heading, classes), in Table VI's column order
DERM7PT_CRITERIA: dict[str, tuple[str, tuple[str, ...]]] = {
    "bwv": ("BWV", ("ABS", "PRS")),
    "dag": ("DaG", ("ABS", "REG", "IR")),
    "pig": ("PIG", ("ABS", "REG", "IR")),
    "pn": ("PN", ("ABS", "TYP", "ATP")),
    "rs": ("RS", ("ABS", "PRS")),
    "str": ("STR", ("ABS", "REG", "IR")),
    "vs": ("VS", ("ABS", "REG", "IR")),
}
# Table VIII: the melanoma-related class of each criterion, in the paper's column order
DERM7PT_MELANOMA_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("pn", "ATP", "PN-ATP"),
    ("str", "IR", "STR-IR"),
    ("pig", "IR", "PIG-IR"),
    ("rs", "PRS", "RS-PRS"),
    ("dag", "IR", "DaG-IR"),
    ("bwv", "PRS", "BWV-PRS"),
    ("vs", "IR", "VS-IR"),
)
TABLE_VIII_METRICS = ("sensitivity", "specificity", "auc", "f1")
_ROW_HEADINGS = {"sensitivity": "Sens", "specificity": "Spec", "auc": "AUC", "f1": "F1", "precision": "Prec"}

# Headline metrics of a single-label task, with the headings the paper uses.
SUMMARY_METRICS = (
    ("accuracy", "Acc"),
    ("balanced_accuracy", "BACC"),
    ("auc_macro", "AUC"),
    ("threshold_f1_macro", "F1@0.5"),
    ("ap_macro", "AP"),
    ("f1_macro", "F1"),
    ("sensitivity_macro", "Sens"),
    ("specificity_macro", "Spec"),
    ("precision_macro", "Prec"),
    ("ece", "ECE"),
)
PER_CLASS_METRICS = ("sensitivity", "specificity", "precision", "auc", "f1", "ap")


def normalize_dataset_name(name: str | None) -> str | None:
    """``"ISIC-2017"`` -> ``"isic2017"``: lower case, only letters and digits."""
    return None if name is None else re.sub(r"[^a-z0-9]", "", name.lower())


def _task(tasks: Sequence[TaskSpec], name: str) -> TaskSpec | None:
    return next((t for t in tasks if t.name == name), None)


def _same_classes(task: TaskSpec | None, classes: Sequence[str]) -> bool:
    return (
        task is not None
        and task.kind == SINGLE
        and sorted(c.lower() for c in task.classes) == sorted(c.lower() for c in classes)
    )


def matches_derm7pt(tasks: Sequence[TaskSpec]) -> bool:
    """True when the tasks are Derm7pt's diagnosis and its seven criteria, with the expected classes."""
    return _same_classes(_task(tasks, DERM7PT_DIAG_TASK), DERM7PT_DIAG_CLASSES) and all(
        _same_classes(_task(tasks, name), classes) for name, (_, classes) in DERM7PT_CRITERIA.items()
    )


def derm7pt_table_vi(preds: Predictions) -> dict[str, float]:
    """Table VI: accuracy of each of the seven criteria and DIAG, and their mean ("Avg.").

    Keys are the paper's column headings in its order: BWV, DaG, PIG, PN, RS, STR, VS, DIAG, Avg.
    Raises ValueError when one of the eight tasks is missing.
    """
    preds = preds.aggregate_by_case()
    missing = [n for n in (*DERM7PT_CRITERIA, DERM7PT_DIAG_TASK) if _task(preds.tasks, n) is None]
    if missing:
        raise ValueError(f"Derm7pt Table VI needs tasks {[*DERM7PT_CRITERIA, 'diag']}; missing {missing}")
    row = {
        heading: M.accuracy(preds.targets[name], preds.probs[name])
        for name, (heading, _) in DERM7PT_CRITERIA.items()
    }
    row["DIAG"] = M.accuracy(preds.targets[DERM7PT_DIAG_TASK], preds.probs[DERM7PT_DIAG_TASK])
    row["Avg."] = M.nanmean(list(row.values()))
    return row


def derm7pt_table_viii(preds: Predictions) -> dict[str, dict[str, float]]:
    """Table VIII: per-class sensitivity, specificity, AUC and F1 (``{metric: {column: value}}``).

    Columns: the five DIAG classes (BCC, NEV, MEL, MISC, SK), ``Avg1`` (their mean), the melanoma
    class of each criterion (PN-ATP, STR-IR, PIG-IR, RS-PRS, DaG-IR, BWV-PRS, VS-IR) and ``Avg2`` (the
    mean of MEL and those seven). A missing criterion task gives NaN in its column and in Avg2; the
    ``diag`` task is required.
    """
    preds = preds.aggregate_by_case()
    diag = _task(preds.tasks, DERM7PT_DIAG_TASK)
    if diag is None or diag.kind != SINGLE:
        raise ValueError(f"Derm7pt Table VIII needs a single-label task {DERM7PT_DIAG_TASK!r}")
    per_task: dict[str, dict[str, np.ndarray]] = {}

    def value(task: str, cls: str, metric: str) -> float:
        spec = _task(preds.tasks, task)
        if spec is None:
            return float("nan")
        if task not in per_task:
            per_task[task] = M.per_class_metrics(preds.targets[task], preds.probs[task])
        return float(per_task[task][metric][M.find_class(spec.classes, (cls,))])

    table: dict[str, dict[str, float]] = {}
    for metric in TABLE_VIII_METRICS:
        row = {cls: value(DERM7PT_DIAG_TASK, cls, metric) for cls in DERM7PT_DIAG_CLASSES}
        row["Avg1"] = M.nanmean([row[c] for c in DERM7PT_DIAG_CLASSES])
        for task, cls, heading in DERM7PT_MELANOMA_CLASSES:
            row[heading] = value(task, cls, metric)
        mel_related = [row["MEL"], *(row[h] for _, _, h in DERM7PT_MELANOMA_CLASSES)]
        all_tasks = all(_task(preds.tasks, t) is not None for t, _, _ in DERM7PT_MELANOMA_CLASSES)
        row["Avg2"] = M.nanmean(mel_related) if all_tasks else float("nan")
        table[metric] = row
    return table


def isic2017_result(preds: Predictions) -> dict[str, float]:
    """ISIC 2017 part 3 score of the diagnosis task; see :func:`metrics.isic2017_score`."""
    preds = preds.aggregate_by_case()
    d = preds.diagnosis
    return M.isic2017_score(preds.targets[d.name], preds.probs[d.name], d.classes)


def decision_rule_result(preds: Predictions, rule: Any) -> dict[str, Any]:
    """The rule's thresholds and validation fit, and the macro F1 at 0.5 of these cases before and after."""
    d = preds.diagnosis
    if rule.task != d.name or list(rule.classes) != list(d.classes):
        raise ValueError(
            f"the decision rule is for task {rule.task!r} with classes {list(rule.classes)}; the "
            f"predictions' task {d.name!r} has classes {list(d.classes)}"
        )
    return {
        "fitted_on": {k: v for k, v in rule.fitted_on.items() if k != "case_ids"},
        "validation": rule.validation,
        **rule.evaluate(preds.targets[d.name], preds.probs[d.name]),
    }


# ----------------------------------------------------------------------------------------------------
# Metrics dict
# ----------------------------------------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    """Nested Python containers of JSON types: NaN/inf -> None, numpy scalars/arrays -> Python."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def evaluate_predictions(
    preds: Predictions, *, dataset_name: str | None = None, decision_rule: Any = None
) -> dict[str, Any]:
    """All metrics of every task, as a JSON-safe nested dict (undefined values are None).

    Samples sharing a case id are first averaged into one case. Keys: ``n_cases``, ``dataset``,
    ``diagnosis_task``, ``tasks`` (task -> metrics of :func:`metrics.single_label_metrics` or
    :func:`metrics.multilabel_metrics`, plus ``kind`` and ``classes``), ``derm7pt`` (``table_vi``,
    ``table_viii``; when the tasks are Derm7pt's or ``dataset_name`` says so), ``isic2017`` (when
    ``dataset_name`` is ISIC 2017), ``decision_rule`` (with a
    :class:`~remixformer.evaluation.thresholds.DecisionRule`: its thresholds, where it was fitted, and
    the macro F1 at 0.5 of these cases before and after it), ``summary`` (the flat metrics of
    :func:`flat_metrics`) and ``caveats`` (absent classes, ties, unknown labels: things a reader of the
    numbers must know).
    """
    n_samples = len(preds)
    preds = preds.aggregate_by_case()
    dataset = normalize_dataset_name(dataset_name)
    caveats: list[str] = []
    if len(preds) < n_samples:
        caveats.append(f"{n_samples} samples averaged into {len(preds)} cases by case id")
    tasks: dict[str, Any] = {}
    for t in preds.tasks:
        y, p = preds.targets[t.name], preds.probs[t.name]
        if t.kind == SINGLE:
            m = M.single_label_metrics(y, p, t.classes)
            if m["n_unknown"]:
                caveats.append(f"{t.name}: {m['n_unknown']} cases with an unknown label ignored")
            if m["absent_classes"]:
                caveats.append(
                    f"{t.name}: classes absent from the targets, AUC/sensitivity undefined and excluded "
                    f"from macro means: {', '.join(m['absent_classes'])}"
                )
            if m["n_undecided"]:
                caveats.append(
                    f"{t.name}: {m['n_undecided']} cases with tied top probabilities "
                    "counted as wrong (ISIC tie rule)"
                )
        else:
            m = M.multilabel_metrics(y, p, t.classes)
            if m["undefined_auc"]:
                caveats.append(
                    f"{t.name}: AUC undefined (one class only among labelled cases) and excluded from "
                    f"the mean: {', '.join(m['undefined_auc'])}"
                )
        tasks[t.name] = {"kind": t.kind, "classes": list(t.classes), **m}
    out: dict[str, Any] = {
        "n_cases": len(preds),
        "n_samples": n_samples,
        "dataset": dataset_name,
        "diagnosis_task": preds.diagnosis.name,
        "tasks": tasks,
    }
    if matches_derm7pt(preds.tasks) or dataset == "derm7pt":
        try:
            out["derm7pt"] = {"table_vi": derm7pt_table_vi(preds), "table_viii": derm7pt_table_viii(preds)}
        except ValueError as e:
            if dataset == "derm7pt":
                logger.warning("Derm7pt tables not computed: %s", e)
                caveats.append(f"Derm7pt tables not computed: {e}")
            else:
                raise
    if dataset == "isic2017":
        out["isic2017"] = isic2017_result(preds)
    if decision_rule is not None:
        out["decision_rule"] = decision_rule_result(preds, decision_rule)
    out["caveats"] = caveats
    out = to_jsonable(out)
    out["summary"] = flat_metrics(out)
    return out


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Flat ``name -> value`` view for ``cv_results.json`` and ``remixformer compare``.

    The diagnosis task's metrics are unprefixed (``accuracy``, ``balanced_accuracy``, ``auc_macro``,
    ``ap_macro``, ``f1_macro``, ``sensitivity_macro``, ``specificity_macro``, ``precision_macro``,
    ``ece``, ``threshold_f1_macro``, and per class ``sensitivity.MEL`` ...); other tasks are prefixed
    with their name (``pn.accuracy``, ``attrs.auc_mean``, ``attrs.auc.PN``); then
    ``derm7pt.avg_accuracy``, ``derm7pt.avg1.f1`` ..., ``isic2017.score``; with a decision rule
    ``threshold_f1_macro_fitted`` (these cases, after the rule) and ``val.threshold_f1_macro``,
    ``val.threshold_f1_macro_fitted`` (the validation cases it was fitted on, before and after).
    """
    flat: dict[str, float | None] = {}
    diag = metrics["diagnosis_task"]
    for name, m in metrics["tasks"].items():
        prefix = "" if name == diag else f"{name}."
        if m["kind"] == SINGLE:
            for key, _ in SUMMARY_METRICS:
                flat[prefix + key] = m[key]
            for cls, pc in m["per_class"].items():
                for key in PER_CLASS_METRICS:
                    flat[f"{prefix}{key}.{cls}"] = pc[key]
        else:
            flat[f"{prefix}auc_mean"] = m["auc_mean"]
            flat[f"{prefix}ap_mean"] = m["ap_mean"]
            for attr, pa in m["per_attribute"].items():
                flat[f"{prefix}auc.{attr}"] = pa["auc"]
    if "derm7pt" in metrics:
        d = metrics["derm7pt"]
        flat["derm7pt.avg_accuracy"] = d["table_vi"]["Avg."]
        for key, row in d["table_viii"].items():
            flat[f"derm7pt.avg1.{key}"] = row["Avg1"]
            flat[f"derm7pt.avg2.{key}"] = row["Avg2"]
    if "isic2017" in metrics:
        for key, v in metrics["isic2017"].items():
            flat[f"isic2017.{key}"] = v
    if "decision_rule" in metrics:
        rule = metrics["decision_rule"]
        flat["threshold_f1_macro_fitted"] = rule["threshold_f1_macro_after"]
        flat["val.threshold_f1_macro"] = rule["validation"].get("threshold_f1_macro_before")
        flat["val.threshold_f1_macro_fitted"] = rule["validation"].get("threshold_f1_macro_after")
    return flat


# ----------------------------------------------------------------------------------------------------
# Markdown
# ----------------------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100.0 * v:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _single_task_md(name: str, m: Mapping[str, Any], figures: Sequence[str]) -> list[str]:
    lines = [
        f"## Task `{name}` (single-label)",
        "",
        f"{m['n_labelled']} labelled cases, {m['n_unknown']} unknown, {m['n_undecided']} with tied top "
        "probabilities (counted wrong). Values in %.",
        "",
    ]
    lines += _table([h for _, h in SUMMARY_METRICS], [[_pct(m[k]) for k, _ in SUMMARY_METRICS]])
    header = ["Class", "n", *(_ROW_HEADINGS.get(k, k.upper()) for k in PER_CLASS_METRICS)]
    rows = [
        [cls, pc["support"], *(_pct(pc[k]) for k in PER_CLASS_METRICS)] for cls, pc in m["per_class"].items()
    ]
    lines += ["Per class (one-vs-rest):", "", *_table(header, rows)]
    cm = m["confusion_matrix"]
    undecided = m["undecided_per_class"]
    header = ["true \\ predicted", *m["classes"]] + (["undecided"] if any(undecided) else [])
    rows = [[cls, *cm[i]] + ([undecided[i]] if any(undecided) else []) for i, cls in enumerate(m["classes"])]
    lines += ["Confusion matrix (counts):", "", *_table(header, rows)]
    lines += [f"![{f}]({f})" for f in figures] + [""]
    return lines


def _multi_task_md(name: str, m: Mapping[str, Any], figures: Sequence[str]) -> list[str]:
    attrs = list(m["per_attribute"])
    lines = [f"## Task `{name}` (multi-label attributes, Table V layout; values in %)", ""]
    rows = [
        ["AUC", *(_pct(m["per_attribute"][a]["auc"]) for a in attrs), _pct(m["auc_mean"])],
        ["AP", *(_pct(m["per_attribute"][a]["ap"]) for a in attrs), _pct(m["ap_mean"])],
        [
            "positives / labelled",
            *(f"{m['per_attribute'][a]['n_positive']}/{m['per_attribute'][a]['n_labelled']}" for a in attrs),
            "",
        ],
    ]
    lines += _table(["", *attrs, "Avg."], rows)
    lines += [f"![{f}]({f})" for f in figures] + [""]
    return lines


def _derm7pt_md(d: Mapping[str, Any]) -> list[str]:
    vi = d["table_vi"]
    lines = ["## Derm7pt", "", "Accuracy of the 7-point checklist and DIAG (Table VI layout, %):", ""]
    lines += _table(list(vi), [[_pct(v) for v in vi.values()]])
    viii = d["table_viii"]
    cols = list(next(iter(viii.values())))
    lines += [
        "Per-class metrics (Table VIII layout, %; criterion columns are the melanoma-related class):",
        "",
    ]
    lines += _table(
        ["Met.", *cols], [[_ROW_HEADINGS[k], *(_pct(row[c]) for c in cols)] for k, row in viii.items()]
    )
    return lines


def _decision_rule_md(r: Mapping[str, Any]) -> list[str]:
    fit = r.get("fitted_on", {})
    val = r.get("validation", {})
    lines = [
        "## Decision rule (per-class thresholds for the macro F1 at 0.5)",
        "",
        f"Thresholds fitted on the {fit.get('split', 'val')} split ({fit.get('n_cases', '?')} cases) only; "
        "each class's probability is rescaled so that it crosses 0.5 at its threshold. Macro F1 at 0.5 "
        f"(%): validation {_pct(val.get('threshold_f1_macro_before'))} -> "
        f"{_pct(val.get('threshold_f1_macro_after'))}; these cases {_pct(r['threshold_f1_macro_before'])} "
        f"-> {_pct(r['threshold_f1_macro_after'])}.",
        "",
    ]
    val_pc = val.get("per_class", {})
    rows = [
        [
            cls,
            f"{pc['threshold']:.3f}" + ("" if pc["fitted"] else " (not fitted)"),
            _pct(val_pc.get(cls, {}).get("f1_before")),
            _pct(val_pc.get(cls, {}).get("f1_after")),
            _pct(pc["f1_before"]),
            _pct(pc["f1_after"]),
        ]
        for cls, pc in r["per_class"].items()
    ]
    header = ["Class", "Threshold", "Val F1@0.5", "Val F1 rule", "F1@0.5", "F1 rule"]
    return [*lines, *_table(header, rows)]


def render_markdown(
    metrics: Mapping[str, Any],
    title: str,
    notes: Sequence[str] = (),
    figures: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The report as Markdown: notes, per-task tables, data-set tables, caveats, figure links."""
    figures = figures or {}
    lines = [f"# {title}", ""]
    if metrics.get("dataset"):
        lines += [f"Data set: {metrics['dataset']}. "]
    lines += [f"{metrics['n_cases']} cases ({metrics.get('n_samples', metrics['n_cases'])} samples).", ""]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    for name, m in metrics["tasks"].items():
        if m["kind"] == SINGLE:
            lines += _single_task_md(name, m, figures.get(name, ()))
        else:
            lines += _multi_task_md(name, m, figures.get(name, ()))
    if "derm7pt" in metrics:
        lines += _derm7pt_md(metrics["derm7pt"])
    if "isic2017" in metrics:
        s = metrics["isic2017"]
        lines += [
            "## ISIC 2017",
            "",
            *_table(
                ["Melanoma AUC", "SK AUC", "Score (mean)"],
                [[_pct(s["melanoma_auc"]), _pct(s["keratosis_auc"]), _pct(s["score"])]],
            ),
        ]
    if "decision_rule" in metrics:
        lines += _decision_rule_md(metrics["decision_rule"])
    if metrics.get("caveats"):
        lines += ["## Caveats", "", *(f"- {c}" for c in metrics["caveats"]), ""]
    lines += ["Metric definitions: docs/evaluation.md.", ""]
    return "\n".join(lines)


def write_report(
    out_dir: str | os.PathLike[str],
    metrics: Mapping[str, Any],
    preds: Predictions,
    title: str = "Evaluation",
    notes: Sequence[str] = (),
    modalities: str | None = None,
    withheld: str = "",
) -> dict[str, Path]:
    """Write report.md, report.json, predictions.csv, roc_<task>.png (every task),
    confusion_<task>.png (single-label tasks) and calibration_<diag>.png into ``out_dir``.

    ``notes`` (for example "leaky fields included: management", "withheld modality: C") appear in
    both the Markdown and the JSON. ``modalities`` (the letters the model reads) and ``withheld`` (the
    letters hidden from it in this evaluation, "" for none) are fields of report.json, for programs;
    the model answered from ``modalities`` less ``withheld``. Returns ``{file name: path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preds = preds.aggregate_by_case()
    metric_tasks, pred_tasks = list(metrics.get("tasks", {})), [t.name for t in preds.tasks]
    if metric_tasks != pred_tasks:
        raise ValueError(f"metrics are for tasks {metric_tasks}, predictions for {pred_tasks}")
    notes = [str(n) for n in notes]
    written: dict[str, Path] = {}
    figures: dict[str, list[str]] = {}
    for t in preds.tasks:
        y, p = preds.targets[t.name], preds.probs[t.name]
        names = [f"roc_{t.name}.png"]
        fig = plots.plot_roc_curves(y, p, t.classes, title=f"ROC curves: {t.name}")
        written[names[0]] = plots.save_figure(fig, out / names[0])
        if t.kind == SINGLE:
            m = metrics["tasks"][t.name]
            names.append(f"confusion_{t.name}.png")
            fig = plots.plot_confusion_matrix(
                m["confusion_matrix"],
                t.classes,
                undecided=m["undecided_per_class"],
                title=f"Confusion matrix: {t.name}",
            )
            written[names[-1]] = plots.save_figure(fig, out / names[-1])
            if t.name == preds.diagnosis.name and m["n_labelled"]:
                names.append(f"calibration_{t.name}.png")
                written[names[-1]] = plots.save_figure(plots.plot_reliability(y, p), out / names[-1])
        figures[t.name] = names
    written["predictions.csv"] = preds.to_csv(out / "predictions.csv")
    md = render_markdown(metrics, title, notes, figures)
    (out / "report.md").write_text(md, encoding="utf-8")
    written["report.md"] = out / "report.md"
    payload = {
        "title": title,
        "notes": notes,
        "modalities": modalities,
        "withheld": withheld,
        "files": sorted([*written, "report.json"]),
        "metrics": to_jsonable(metrics),
    }
    (out / "report.json").write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    written["report.json"] = out / "report.json"
    logger.info("wrote evaluation report to %s (%d files)", out, len(written))
    return written
