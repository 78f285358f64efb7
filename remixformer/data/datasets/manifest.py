"""The project's manifest format for private and new data (e.g. the paper's 12-class hospital set).

``manifest.csv``: one row per case.

================  ===========================================================================
column            content
================  ===========================================================================
``case_id``       required, unique
``patient_id``    required (blank: the case is its own group); folds never split a patient
``diagnosis``     class name (blank: unknown, ignored by the loss and the metrics)
``clinical``      zero or more clinical image paths separated by ``;``
``dermoscopy``    zero or more dermoscopy image paths separated by ``;``
*field*           one column per metadata field of the schema (blank: unknown)
*task*            one column per extra task declared in the schema (single-label: a class name;
                  multi-label: ``;``-separated names of the attributes present, ``none`` for none)
``split``         optional: ``train``, ``val`` or ``test`` on every row (wins over k-fold)
================  ===========================================================================

Relative image paths are relative to the manifest's folder. The schema file (JSON or YAML) holds
``fields`` (see :mod:`remixformer.schema`; a field may say ``"leaky": true``) and optionally
``tasks`` (``[{"name": "diag", "classes": [...]}, {"name": "pn", "classes": [...]},
{"name": "attributes", "kind": "multi", "classes": [...]}]``), which fixes class order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from remixformer.data.cases import SPLITS, Case, CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.datasets.common import (
    cell,
    csv_line,
    modalities_of,
    read_csv,
    restrict_metadata,
    split_schema,
)
from remixformer.schema import MetadataSchema
from remixformer.tasks import DIAG, MULTI, TaskSpec

log = logging.getLogger(__name__)

NAME = "manifest"
REQUIRED = ("case_id", "diagnosis")
RESERVED = ("case_id", "patient_id", "diagnosis", "clinical", "dermoscopy", "split")
PATH_SEP = ";"
NONE_TOKENS = ("none", "-")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


@dataclass
class SchemaFile:
    """A parsed schema file: all metadata fields, the leaky ones, and the declared tasks (if any)."""

    schema: MetadataSchema
    leaky: list[str]
    tasks: list[TaskSpec] | None


def read_schema_file(path: str | Path) -> SchemaFile:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"schema file not found: {path}")
    text = path.read_text()
    try:
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        kind = "YAML" if path.suffix.lower() in (".yaml", ".yml") else "JSON"
        raise ValueError(f"{path}: not valid {kind}: {e}") from e
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping with 'fields' (and optional 'tasks')")
    unknown = sorted(set(data) - {"name", "description", "fields", "tasks"})
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {unknown}; expected 'fields', 'tasks', 'name', 'description'"
        )
    data = {"fields": [], **data}
    schema = MetadataSchema.from_dict(data, where=str(path))
    leaky = [str(f["name"]) for f in data["fields"] if isinstance(f, Mapping) and f.get("leaky")]
    tasks = None
    if data.get("tasks") is not None:
        raw = data["tasks"]
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"{path}: 'tasks' must be a non-empty list of {{name, classes, kind}}")
        try:
            tasks = [TaskSpec.from_dict(t) for t in raw]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: 'tasks': {e}") from e
        names = [t.name for t in tasks]
        if DIAG not in names:
            raise ValueError(f"{path}: 'tasks' must include {DIAG!r} (the diagnosis), got {names}")
        tasks.sort(key=lambda t: t.name != DIAG)
        clash = sorted(set(names) & (set(RESERVED) | set(schema.field_names)) - {DIAG})
        if clash:
            raise ValueError(f"{path}: task name(s) {clash} clash with reserved columns or metadata fields")
    return SchemaFile(schema=schema, leaky=leaky, tasks=tasks)


def image_paths(value: Any, base: Path) -> list[str]:
    """The ``;``-separated image paths of a manifest cell, relative ones resolved against ``base``."""
    text = cell(value)
    if text is None:
        return []
    out = []
    for part in text.split(PATH_SEP):
        part = part.strip()
        if part:
            p = Path(part).expanduser()
            out.append(str(p if p.is_absolute() else base / p))
    return out


def _single(value: Any, spec: TaskSpec, where: str) -> int:
    text = cell(value)
    if text is None:
        return -1
    if text in spec.classes:
        return spec.classes.index(text)
    low = {c.lower(): i for i, c in enumerate(spec.classes)}
    if text.lower() in low:
        return low[text.lower()]
    raise ValueError(
        f"{where}: unknown value {text!r} for task {spec.name!r}; expected one of {list(spec.classes)}"
    )


def _multi(value: Any, spec: TaskSpec, where: str) -> list[float]:
    text = cell(value)
    if text is None:
        return [float("nan")] * spec.num_classes
    if text.lower() in NONE_TOKENS:
        return [0.0] * spec.num_classes
    present = {p.strip().lower() for p in text.split(PATH_SEP) if p.strip()}
    known = {c.lower() for c in spec.classes}
    bad = sorted(present - known)
    if bad:
        raise ValueError(
            f"{where}: unknown attribute(s) {bad} for task {spec.name!r}; expected names from "
            f"{list(spec.classes)} separated by ';', or 'none'"
        )
    return [1.0 if c.lower() in present else 0.0 for c in spec.classes]


def _infer_tasks(df, task_columns: list[str]) -> list[TaskSpec]:
    tasks = []
    for col in [DIAG, *task_columns]:
        src = "diagnosis" if col == DIAG else col
        values = sorted({v for v in (cell(x) for x in df[src]) if v is not None})
        if len(values) < 2:
            raise ValueError(
                f"manifest column {src!r}: need at least 2 distinct classes to infer the task, got "
                f"{values}; declare the task's classes in the schema file"
            )
        tasks.append(TaskSpec(col, tuple(values)))
    log.info(
        "manifest: class order inferred (sorted) for %s; declare 'tasks' in the schema file to fix it",
        [t.name for t in tasks],
    )
    return tasks


def load_manifest(
    manifest: str | Path, schema_path: str | Path, cfg: DataConfig, name: str = NAME
) -> CaseTable:
    manifest = Path(manifest).expanduser()
    if not manifest.is_file():
        raise ValueError(f"{name}: manifest file not found: {manifest}")
    spec = read_schema_file(schema_path)
    df = read_csv(manifest, name, required=REQUIRED, what="a manifest")
    if df.empty:
        raise ValueError(f"{name}: {manifest}: no cases (the file has its header line and no data rows)")
    missing_fields = [f for f in spec.schema.field_names if f not in df.columns]
    if missing_fields:
        raise ValueError(
            f"{name}: {manifest}: missing column(s) {missing_fields} for the metadata field(s) the schema "
            f"{schema_path} declares (a column may be blank, but it must exist)"
        )
    declared = spec.tasks
    task_cols = [t.name for t in declared[1:]] if declared else []
    missing_tasks = [t for t in task_cols if t not in df.columns]
    if missing_tasks:
        raise ValueError(
            f"{name}: {manifest}: missing column(s) {missing_tasks} for the task(s) the schema declares"
        )
    known_cols = set(RESERVED) | set(spec.schema.field_names) | set(task_cols)
    ignored = [c for c in df.columns if c not in known_cols]
    if ignored:
        log.warning(
            "%s: %s: column(s) %s are neither reserved columns, schema fields nor declared tasks; ignored",
            name,
            manifest,
            ignored,
        )
    tasks = declared if declared else _infer_tasks(df, [])
    schema, included = split_schema(spec.schema, spec.leaky, cfg.include_leaky_fields, name)
    base = manifest.parent
    has_split = "split" in df.columns
    ids = df["case_id"].map(cell)
    blank_ids = [csv_line(r) for r, v in ids.items() if v is None]
    if blank_ids:
        raise ValueError(f"{name}: {manifest}: column 'case_id' is blank on line(s) {blank_ids[:20]}")
    dupes = ids[ids.duplicated(keep=False)]
    if len(dupes):
        first = dupes.index[0]
        lines = [csv_line(r) for r in dupes.index if ids[r] == ids[first]]
        raise ValueError(
            f"{name}: {manifest}: case_id {ids[first]!r} repeats on lines {lines}; case ids must be unique"
        )

    cases = []
    blank_splits = []
    n_unknown_diag = 0
    for r, row in df.iterrows():
        line = csv_line(r)
        where = f"{name}: {manifest} line {line}"
        case_id = ids[r]
        targets: dict[str, Any] = {}
        for t in tasks:
            col = "diagnosis" if t.name == DIAG else t.name
            w = f"{where}, column {col!r}"
            targets[t.name] = _multi(row[col], t, w) if t.kind == MULTI else _single(row[col], t, w)
        n_unknown_diag += targets[DIAG] < 0
        split = None
        if has_split:
            raw = cell(row["split"])
            if raw is None:
                blank_splits.append(line)
            elif raw.lower() not in SPLIT_ALIASES:
                raise ValueError(
                    f"{where}, column 'split': unknown value {raw!r}; expected one of {list(SPLITS)}"
                )
            else:
                split = SPLIT_ALIASES[raw.lower()]
        patient = cell(row["patient_id"]) if "patient_id" in df.columns else None
        metadata = {f: cell(row[f]) for f in spec.schema.field_names}
        cases.append(
            Case(
                case_id=case_id,
                group_id=patient or case_id,
                targets=targets,
                clinical=image_paths(row.get("clinical"), base),
                dermoscopy=image_paths(row.get("dermoscopy"), base),
                metadata=restrict_metadata(metadata, schema),
                split=split,
                source=f"{manifest.name} line {line}",
            )
        )
    if blank_splits:
        raise ValueError(
            f"{name}: {manifest}: column 'split' is blank on line(s) {blank_splits[:20]}"
            f"{' ...' if len(blank_splits) > 20 else ''}; fill it on every row or remove the column"
        )
    if has_split:
        _check_patient_splits(cases, manifest, name)
    notes = []
    if n_unknown_diag:
        notes.append(
            f"{n_unknown_diag} case(s) have a blank diagnosis (unknown: ignored by the loss and metrics)"
        )
    if "patient_id" not in df.columns:
        notes.append("no patient_id column: every case is its own group")
    return CaseTable(
        name=name,
        cases=cases,
        tasks=tuple(tasks),
        schema=schema,
        modalities=modalities_of(cases, schema),
        root=str(base),
        leaky_fields_included=included,
        leaky_fields_available=list(spec.leaky),
        notes=notes,
        split_name="manifest split column" if has_split else "",
    )


def _check_patient_splits(cases: list[Case], manifest: Path, name: str) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for c in cases:
        prev = seen.setdefault(c.group_id, (c.split, c.source))
        if prev[0] != c.split:
            raise ValueError(
                f"{name}: {manifest}: patient {c.group_id!r} is in split {prev[0]!r} ({prev[1]}) "
                f"and in split {c.split!r} ({c.source}); a patient's cases must share one split"
            )


def load(cfg: DataConfig) -> CaseTable:
    root = Path(cfg.root).expanduser() if cfg.root else Path(".")
    manifest = Path(cfg.manifest).expanduser() if cfg.manifest else root / "manifest.csv"
    schema = Path(cfg.schema).expanduser() if cfg.schema else manifest.parent / "schema.json"
    return load_manifest(manifest, schema, cfg)
