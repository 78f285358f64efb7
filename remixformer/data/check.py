"""``remixformer data check``: validate a data set and describe it.

Reports counts per split (or per fold) and class for every task, modality availability, missing or
unreadable image files, image paths that leave the data root, metadata fields with blanks, values
outside the schema (with the lines holding them), and leakage risks:
leaky fields (excluded or included), fields whose *blank pattern* is associated with the diagnosis
(the unknown slot then acts as a label proxy), image files shared by several cases, and groups that
straddle official splits. Layout errors (missing files or columns, unknown labels) raise ``ValueError``
from the loader with file/row/column messages. Bad image files, relative image paths that leave the data
root, metadata values outside the schema and groups across splits are problems (exit status 1).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from remixformer.data.cases import SPLITS, CaseTable, leakage_warning
from remixformer.data.config import DataConfig
from remixformer.data.datasets.common import blank_counts, unseen_sources
from remixformer.data.registry import BadFile, find_bad_files, load_cases
from remixformer.data.splits import OFFICIAL, check_disjoint_groups, fold_assignment, resolve_protocol

log = logging.getLogger(__name__)

BLANK_ASSOCIATION_V = 0.2  # Cramér's V above which a field's blank pattern is reported as a label proxy


@dataclass
class CheckReport:
    name: str
    root: str
    n_cases: int
    modalities: str
    tasks: list[dict[str, Any]]
    protocol: str
    metadata_dim: int
    partitions: dict[str, list[int]]  # split or fold name -> case indices
    class_counts: dict[str, dict[str, dict[str, int]]]  # partition -> task -> class -> count
    modality_counts: dict[str, dict[str, int]]  # partition -> modality letter -> cases having it
    bad_files: list[BadFile] = field(default_factory=list)
    verified: bool = False
    blanks: dict[str, int] = field(default_factory=dict)
    unseen: dict[str, dict[str, int]] = field(default_factory=dict)
    unseen_where: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # field -> value -> lines
    outside_root: list[BadFile] = field(default_factory=list)  # relative paths that leave the root
    outside_root_absolute: int = 0  # absolute image paths elsewhere (allowed; counted in a note)
    leakage: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.bad_files or self.errors or self.unseen or self.outside_root)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "root": self.root,
            "n_cases": self.n_cases,
            "modalities": self.modalities,
            "tasks": self.tasks,
            "protocol": self.protocol,
            "metadata_dim": self.metadata_dim,
            "partition_sizes": {k: len(v) for k, v in self.partitions.items()},
            "class_counts": self.class_counts,
            "modality_counts": self.modality_counts,
            "bad_files": [vars(b) for b in self.bad_files],
            "images_decoded": self.verified,
            "blanks": self.blanks,
            "unseen_values": self.unseen,
            "unseen_value_sources": self.unseen_where,
            "paths_outside_root": [vars(b) for b in self.outside_root],
            "leakage": self.leakage,
            "notes": self.notes,
            "errors": self.errors,
            "ok": self.ok,
        }

    def format(self, max_list: int = 20) -> str:
        lines = [
            f"data set {self.name}: {self.n_cases} cases, modalities {self.modalities}, root {self.root}"
        ]
        lines.append(
            "tasks: " + "; ".join(f"{t['name']} ({t['kind']}, {len(t['classes'])})" for t in self.tasks)
        )
        lines.append(f"metadata: {self.metadata_dim} one-hot slots")
        lines.append(f"split protocol: {self.protocol}")
        for task in self.tasks:
            name = task["name"]
            header = ["", *task["classes"], "unknown", "total"]
            rows = [header]
            for part, idx in self.partitions.items():
                counts = self.class_counts[part][name]
                rows.append(
                    [part, *(str(counts[c]) for c in task["classes"]), str(counts["unknown"]), str(len(idx))]
                )
            label = "positives per attribute" if task["kind"] == "multi" else "cases per class"
            lines.append(f"\n{name} ({label}):")
            lines += _table(rows)
        rows = [["", *self.modalities, "total"]]
        for part, idx in self.partitions.items():
            rows.append([part, *(str(self.modality_counts[part][m]) for m in self.modalities), str(len(idx))])
        lines.append("\ncases with each modality:")
        lines += _table(rows)
        if self.blanks or self.unseen:
            lines.append(
                "\nmetadata fields with blanks or values outside the schema (both encode as unknown):"
            )
            for f in sorted(set(self.blanks) | set(self.unseen)):
                unseen = self.unseen.get(f, {})
                extra = ""
                if unseen:
                    shown = ", ".join(
                        f"{v!r} x{n}" for v, n in sorted(unseen.items(), key=lambda x: -x[1])[:8]
                    )
                    extra = f"; {sum(unseen.values())} outside the schema ({shown})"
                n_blank = self.blanks.get(f, 0)
                share = 100 * n_blank / max(1, self.n_cases)
                lines.append(f"  {f}: {n_blank} blank ({share:.1f}%){extra}")
        if self.unseen_where:
            n = sum(len(w) for values in self.unseen_where.values() for w in values.values())
            lines.append(
                f"\n{n} metadata value(s) outside the schema (training would read them as unknown; "
                "correct the value, or add it to the schema or an alias):"
            )
            shown = 0
            for f, values in sorted(self.unseen_where.items()):
                for v, where in sorted(values.items(), key=lambda x: -len(x[1])):
                    if shown >= max_list:
                        break
                    more = f" and {len(where) - 5} more" if len(where) > 5 else ""
                    lines.append(f"  field {f!r}: value {v!r} on {', '.join(where[:5])}{more}")
                    shown += 1
            if shown < sum(len(values) for values in self.unseen_where.values()):
                lines.append("  ... (--max-list to show more)")
        if self.outside_root:
            lines.append(
                f"\n{len(self.outside_root)} image path(s) leave the data root {self.root} "
                "(a relative path must stay inside the manifest's folder):"
            )
            lines += [f"  {b}" for b in self.outside_root[:max_list]]
            if len(self.outside_root) > max_list:
                lines.append(f"  ... and {len(self.outside_root) - max_list} more")
        for title, items in (("notes", self.notes), ("leakage", self.leakage)):
            if items:
                lines.append(f"\n{title}:")
                lines += [f"  - {s}" for s in items]
        what = "missing or unreadable" if self.verified else "missing (images not decoded: --quick)"
        if self.bad_files:
            cases = {b.case_id for b in self.bad_files}
            lines.append(f"\n{len(self.bad_files)} image file(s) of {len(cases)} case(s) {what}:")
            lines += [f"  {b}" for b in self.bad_files[:max_list]]
            if len(self.bad_files) > max_list:
                lines.append(f"  ... and {len(self.bad_files) - max_list} more (--max-list to show more)")
            lines.append(
                "  (with skip_bad_cases=true, training and evaluation leave these cases out; a model that "
                "reads no image, modalities M, needs none of them)"
            )
        else:
            lines.append(f"\nimage files: all present{' and readable' if self.verified else ''}")
        if self.errors:
            lines.append("\nerrors:")
            lines += [f"  - {e}" for e in self.errors]
        lines.append("\nresult: " + ("OK" if self.ok else "PROBLEMS FOUND"))
        return "\n".join(lines)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
        for r in rows
    ]


def _cramers_v(flag: np.ndarray, labels: np.ndarray) -> float:
    """Association between a boolean and a class label (0 = none, 1 = one determines the other)."""
    classes = np.unique(labels)
    if len(classes) < 2 or flag.all() or not flag.any():
        return 0.0
    table = np.array(
        [[np.sum((labels == c) & flag), np.sum((labels == c) & ~flag)] for c in classes], dtype=float
    )
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = float(np.sum((table - expected) ** 2 / np.where(expected > 0, expected, 1)))
    return float(np.sqrt(chi2 / table.sum()))  # min(rows, cols) - 1 == 1 for a boolean


def leakage_findings(table: CaseTable) -> list[str]:
    out = []
    excluded = [f for f in table.leaky_fields_available if f not in table.leaky_fields_included]
    if table.leaky_fields_included:
        out.append(leakage_warning(table.leaky_fields_included))
    if excluded:
        out.append(
            f"field(s) {excluded} leak the label and are excluded from the inputs "
            "(include by name with include_leaky_fields / --include-leaky)"
        )
    if table.answer_fields:
        out.append(
            f"field(s) {list(table.answer_fields)} are answers, excluded from the inputs and never "
            "includable: " + "; ".join(f"{k}: {v}" for k, v in table.answer_fields.items())
        )
    labels = table.labels()
    known = labels >= 0
    classes = table.tasks[0].classes
    patterns: dict[bytes, list[str]] = defaultdict(list)
    flags: dict[bytes, np.ndarray] = {}
    for f in table.schema.fields:
        flag = np.asarray([f.lookup(c.metadata.get(f.name))[0] is None for c in table.cases])
        if flag.sum() < max(10, 0.01 * len(flag)) or flag.all():
            continue
        key = np.packbits(flag).tobytes()
        patterns[key].append(f.name)
        flags[key] = flag
    for key, names in patterns.items():
        flag = flags[key][known]
        v = _cramers_v(flag, labels[known])
        if v >= BLANK_ASSOCIATION_V:
            rates = ", ".join(
                f"{classes[c]} {100 * flag[labels[known] == c].mean():.0f}%" for c in np.unique(labels[known])
            )
            out.append(
                f"blanks in {names} are associated with the diagnosis (Cramér's V {v:.2f}; share blank per "
                f"class: {rates}): their unknown slots act as a label proxy"
            )
    users: dict[str, list[str]] = defaultdict(list)
    for c in table.cases:
        for p in {*c.clinical, *c.dermoscopy}:
            users[p].append(c.case_id)
    shared = {p: ids for p, ids in users.items() if len(ids) > 1}
    if shared:
        p, ids = next(iter(shared.items()))
        out.append(
            f"{len(shared)} image file(s) are used by more than one case (e.g. {p}: {ids[:5]}); "
            "cases sharing an image should share a patient/group"
        )
    return out


def paths_outside_root(table: CaseTable) -> tuple[list[BadFile], int]:
    """Image paths outside the data root: relative ones that climb out of it with ``..`` (problems),
    and the number of absolute paths elsewhere (a manifest may name them on purpose)."""
    if not table.root:
        return [], 0
    root = os.path.normpath(os.path.abspath(table.root))
    joined = table.root.rstrip("/\\") + os.sep  # loaders join relative paths onto the root as given
    escaping: list[BadFile] = []
    absolute = 0
    for c in table.cases:
        for p in (*c.clinical, *c.dermoscopy):
            norm = os.path.normpath(os.path.abspath(p))
            if norm == root or norm.startswith(root.rstrip(os.sep) + os.sep):
                continue
            if not os.path.isabs(p) or p.startswith(joined):
                escaping.append(BadFile(c.case_id, p, f"resolves to {norm}, outside the data root", c.source))
            else:
                absolute += 1
    return escaping, absolute


def check_dataset(
    cfg: DataConfig, verify_images: bool = True, progress: Callable[[int, int], None] | None = None
) -> CheckReport:
    """Load ``cfg``'s data set without applying the bad-case policy and report on it."""
    table = load_cases(cfg)
    protocol = resolve_protocol(table, cfg.protocol)
    errors: list[str] = []
    if protocol == OFFICIAL:
        partitions = {s: [i for i, c in enumerate(table.cases) if c.split == s] for s in SPLITS}
        try:
            check_disjoint_groups(table, partitions)
        except ValueError as e:
            errors.append(str(e))
        protocol_text = f"official ({table.split_name})" if table.split_name else "official"
    else:
        folds = fold_assignment(table, cfg.n_folds, cfg.seed)
        partitions = {f"fold {k}": np.flatnonzero(folds == k).tolist() for k in range(cfg.n_folds)}
        try:
            check_disjoint_groups(table, partitions)
        except ValueError as e:
            errors.append(str(e))
        n_groups = len(set(table.group_ids.tolist()))
        protocol_text = (
            f"{cfg.n_folds}-fold, stratified by diagnosis, grouped ({n_groups} groups of "
            f"{len(table)} cases), seed {cfg.seed}"
        )
    partitions["all"] = list(range(len(table)))
    class_counts = {
        p: {t.name: table.class_counts(t.name, idx) for t in table.tasks} for p, idx in partitions.items()
    }
    has = {m: table.has_modality(m) for m in table.modalities}
    modality_counts = {
        p: {m: int(has[m][idx].sum()) for m in table.modalities} for p, idx in partitions.items()
    }
    bad = find_bad_files(table, verify=verify_images, max_pixels=cfg.max_image_pixels, progress=progress)
    unseen = unseen_sources(table)
    outside, absolute = paths_outside_root(table)
    notes = list(table.notes)
    if protocol == OFFICIAL and bad:
        notes += _emptied_split_notes(table, partitions, {b.case_id for b in bad}, cfg.val_fraction)
    if absolute:
        notes.append(f"{absolute} image path(s) are absolute paths outside the data root {table.root}")
    return CheckReport(
        name=table.name,
        root=table.root,
        n_cases=len(table),
        modalities=table.modalities,
        tasks=[t.to_dict() for t in table.tasks],
        protocol=protocol_text,
        metadata_dim=table.schema.dim,
        partitions=partitions,
        class_counts=class_counts,
        modality_counts=modality_counts,
        bad_files=bad,
        verified=verify_images,
        blanks=blank_counts(table),
        unseen={f: {v: len(w) for v, w in values.items()} for f, values in unseen.items()},
        unseen_where=unseen,
        outside_root=outside,
        outside_root_absolute=absolute,
        leakage=leakage_findings(table),
        notes=notes,
        errors=errors,
    )


def _emptied_split_notes(
    table: CaseTable, partitions: dict[str, list[int]], bad_cases: set[str], val_fraction: float
) -> list[str]:
    """Official splits whose every case lacks an image file: what training will do about it."""
    out = []
    for split in SPLITS:
        idx = partitions.get(split, [])
        if idx and all(table.cases[i].case_id in bad_cases for i in idx):
            if split == "val":
                what = (
                    f"with skip_bad_cases=true, training carves validation from the training cases "
                    f"(data.val_fraction={val_fraction:g}, stratified, grouped as the folds are)"
                )
            elif split == "test":
                what = "a model that reads images has nothing to test on"
            else:
                what = "a model that reads images has nothing to train on"
            labelled = int((table.labels()[idx] >= 0).sum())
            cases = f"{len(idx)} labelled case(s)" if labelled == len(idx) else f"{len(idx)} case(s)"
            if labelled < len(idx):
                cases += f" ({labelled} labelled)"
            out.append(f"the official {split} split has {cases} but none of their images is present: {what}")
    return out
