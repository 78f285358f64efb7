"""Evaluate a model on cases of a data set: predictions, metrics, the report files.

Used after training (the run's best model on its test split), by ``remixformer evaluate`` (any
checkpoint, any split or manifest, optionally with a modality withheld), by cross-validation and the demo.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from remixformer.config import from_dict
from remixformer.data.config import DataConfig
from remixformer.data.loaders import answerable, evaluation_loader, pin_memory_for
from remixformer.data.registry import load_dataset
from remixformer.data.splits import splits_from_config
from remixformer.evaluation.report import evaluate_predictions, write_report
from remixformer.evaluation.runner import predict
from remixformer.keys import IGNORE_INDEX
from remixformer.modalities import parse_modalities
from remixformer.schema import MetadataSchema
from remixformer.tasks import MULTI

log = logging.getLogger(__name__)


def align_to_model(table: Any, model: Any) -> Any:
    """The data set relabelled to the model's tasks (by class name) and encoded with its metadata schema.

    A diagnosis class the model does not know is an error; a task the data lacks is unknown for every case.
    """
    tasks = model.tasks
    if tuple(table.tasks) == tuple(tasks) and (
        model.config.metadata_schema is None or table.schema.to_dict() == model.config.metadata_schema
    ):
        return table
    data_tasks = {t.name: t for t in table.tasks}
    cases = []
    for c in table.cases:
        targets: dict[str, Any] = {}
        for t in tasks:
            src = data_tasks.get(t.name)
            v = c.targets.get(t.name) if src is not None else None
            if src is None or v is None:
                targets[t.name] = [float("nan")] * t.num_classes if t.kind == MULTI else IGNORE_INDEX
            elif t.kind == MULTI:
                by_name = dict(zip(src.classes, v))
                targets[t.name] = [by_name.get(a, float("nan")) for a in t.classes]
            elif int(v) < 0:
                targets[t.name] = IGNORE_INDEX
            else:
                name = src.classes[int(v)]
                if name not in t.classes:
                    raise ValueError(
                        f"{c.where()}: {t.name} label {name!r} is not one of the model's classes "
                        f"{list(t.classes)}"
                    )
                targets[t.name] = t.classes.index(name)
        cases.append(replace(c, targets=targets))
    schema = table.schema
    if model.config.metadata_schema is not None:
        schema = MetadataSchema.from_dict(model.config.metadata_schema)
    return replace(table, cases=cases, tasks=tuple(tasks), schema=schema)


def predict_cases(
    model: Any,
    table: Any,
    indices: list[int],
    *,
    batch_size: int = 16,
    num_workers: int = 0,
    withhold: str = "",
    tta_flip: bool = False,
    progress: bool = True,
    max_image_pixels: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Any, list[str]]:
    """The model's predictions on ``indices`` of ``table`` (one row per case, samples averaged) and the
    notes a report of them must carry (cases left out, a withheld modality); the model runs on
    ``device``."""
    if not indices:
        raise ValueError(f"{table.name}: no cases to evaluate")
    withhold = parse_modalities(withhold, "--withhold", allow_empty=True)

    table = align_to_model(table, model)
    cfg = model.config
    indices, unanswerable = answerable(table, list(indices), cfg.modalities)
    if not indices:
        raise ValueError(
            f"{table.name}: none of the cases has any of the model's modalities {cfg.modalities}"
        )
    kwargs = {} if max_image_pixels is None else {"max_image_pixels": max_image_pixels}
    loader, _ = evaluation_loader(
        table,
        indices,
        cfg,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory_for(device),
        **kwargs,
    )
    preds, dropped = predict(
        model,
        loader,
        device=device,
        withhold=withhold,
        tta_flip=tta_flip,
        progress=progress,
        desc=f"evaluate {table.name}",
    )
    notes = []
    if unanswerable:
        notes.append(
            f"{len(unanswerable)} case(s) have none of the model's modalities ({cfg.modalities}) and "
            f"were not evaluated (e.g. {', '.join(unanswerable[:5])})"
        )
    if withhold:
        notes.append(f"withheld modality: {withhold.upper()} (the model answered without it)")
    if dropped:
        notes.append(
            f"{len(dropped)} case(s) not evaluated: none of the model's modalities remained "
            f"(e.g. {', '.join(dropped[:5])})"
        )
    return preds.aggregate_by_case(), notes


def evaluate_cases(
    model: Any,
    table: Any,
    indices: list[int],
    out_dir: str | Path,
    *,
    title: str,
    notes: list[str] | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    withhold: str = "",
    tta_flip: bool = False,
    progress: bool = True,
    max_image_pixels: int | None = None,
    decision_rule: Any = None,
    predictions: list | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Predict ``indices`` of ``table`` with ``model``, write the report into ``out_dir``; return the
    full metrics dict (``["summary"]`` is the flat view). ``decision_rule``: a
    :class:`~remixformer.evaluation.thresholds.DecisionRule` whose effect on the macro F1 at 0.5 the
    report shows. ``predictions``: a list that receives the :class:`Predictions` (for callers that
    need them, e.g. to fit a decision rule). ``device``: where the model runs."""
    preds, extra = predict_cases(
        model,
        table,
        indices,
        batch_size=batch_size,
        num_workers=num_workers,
        withhold=withhold,
        tta_flip=tta_flip,
        progress=progress,
        max_image_pixels=max_image_pixels,
        device=device,
    )
    metrics = evaluate_predictions(preds, dataset_name=table.name, decision_rule=decision_rule)
    write_report(
        out_dir,
        metrics,
        preds,
        title=title,
        notes=[*(notes or []), *extra],
        modalities=model.config.modalities,
        withheld=parse_modalities(withhold, "--withhold", allow_empty=True),
    )
    if predictions is not None:
        predictions.append(preds)
    return metrics


def data_notes(table: Any, data_cfg: Any, split: str, modalities: str) -> list[str]:
    """What every report of a run must say: data set, split protocol, leakage, skipped cases."""
    protocol = data_cfg.protocol
    notes = [
        f"data set: {table.name}; split: {split}; protocol: {protocol}"
        + (
            f" (fold {data_cfg.fold} of {data_cfg.n_folds}, grouped by patient/lesion)"
            if protocol == "kfold"
            else ""
        ),
        f"model modalities: {modalities}",
    ]
    if table.leaky_fields_included:
        notes.append(
            "LEAKAGE: metadata fields that leak the label were used as inputs: "
            + ", ".join(table.leaky_fields_included)
        )
    notes += list(table.notes)
    return notes


def checkpoint_cases(
    model: Any,
    *,
    split: str = "test",
    dataset: str | None = None,
    root: str | None = None,
    manifest: str | None = None,
    schema: str | None = None,
    skip_bad_cases: bool = False,
    where: str = "the checkpoint",
) -> tuple[Any, list[int], str, Any]:
    """The data set and case indices a checkpoint is evaluated on: by default the split of the data set it
    was trained on (its config is in the checkpoint); ``dataset``/``root`` point elsewhere; ``manifest``
    evaluates new cases (all of them unless the manifest has a split column).

    Returns ``(table, indices, split, data_config)``.
    """
    extra = getattr(model, "checkpoint_extra", {}) or {}
    data = dict(extra.get("data") or {})
    if manifest:
        data = {
            **data,
            "dataset": "manifest",
            "manifest": manifest,
            "schema": schema,
            "root": str(Path(manifest).parent),
        }
    if dataset:
        data["dataset"] = dataset
    if root:
        data["root"] = root
    if skip_bad_cases:
        data["skip_bad_cases"] = True
    if not data:
        raise ValueError(f"{where}: the checkpoint names no data set; pass --dataset/--root or --manifest")
    data_cfg = from_dict(DataConfig, data)
    table = load_dataset(data_cfg, modalities=getattr(model, "modalities", "CDM"))
    if split == "all" or (manifest and not table.has_official_split):
        return table, list(range(len(table))), "all", data_cfg
    return table, splits_from_config(table, data_cfg)[split], split, data_cfg
