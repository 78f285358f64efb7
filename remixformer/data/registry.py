"""Data set names -> loaders, and :func:`load_dataset`, the one entry point the rest of the project uses."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from remixformer.data.cases import CaseTable
from remixformer.data.config import DATASET_NAMES, DEFAULT_MAX_IMAGE_PIXELS, DataConfig
from remixformer.data.datasets import derm7pt, isic, manifest, milk10k, pad_ufes, synthetic
from remixformer.data.images import BadImageError, missing_file_reason, verify_image
from remixformer.modalities import modality_names
from remixformer.tasks import DIAG

log = logging.getLogger(__name__)

Loader = Callable[[DataConfig], CaseTable]


def _loaders() -> dict[str, Loader]:
    loaders: dict[str, Loader] = {
        "synthetic": synthetic.load,
        "derm7pt": derm7pt.load,
        "pad_ufes20": pad_ufes.load,
        "isic2017": isic.load_isic2017,
        "isic2018": isic.load_isic2018,
        "isic2019": isic.load_isic2019,
        "milk10k": milk10k.load,
        "milk10k_benchmark": milk10k.load_benchmark,
        "manifest": manifest.load,
    }
    assert set(loaders) == set(DATASET_NAMES), "data.config.DATASET_NAMES and the loaders disagree"
    return loaders


def dataset_names() -> tuple[str, ...]:
    return DATASET_NAMES


def load_cases(cfg: DataConfig) -> CaseTable:
    """Read a data set's tables (no image file is opened or checked)."""
    loaders = _loaders()
    if cfg.dataset not in loaders:
        raise ValueError(f"unknown data set {cfg.dataset!r}; known: {sorted(loaders)}")
    table = loaders[cfg.dataset](cfg)
    if cfg.exclude_fields:
        table = exclude_fields(table, cfg.exclude_fields)
    if cfg.dermoscopy_as_clinical:
        table = dermoscopy_as_clinical(table)
    log.info(
        "%s: %d cases, modalities %s, tasks %s, metadata dim %d",
        table.name,
        len(table),
        table.modalities,
        [t.name for t in table.tasks],
        table.schema.dim,
    )
    return table


def exclude_fields(table: CaseTable, names: list[str]) -> CaseTable:
    """Drop metadata fields from the schema and the cases (``exclude_fields`` of the config)."""
    unknown = sorted(set(names) - set(table.schema.field_names))
    if unknown:
        raise ValueError(
            f"{table.name}: exclude_fields names {unknown}, which are not metadata fields; "
            f"fields are {table.schema.field_names}"
        )
    schema = table.schema.without(names)
    cases = [replace(c, metadata={k: v for k, v in c.metadata.items() if k in schema}) for c in table.cases]
    note = f"metadata field(s) {sorted(names)} excluded by the configuration (exclude_fields)"
    modalities = table.modalities if len(schema) else table.modalities.replace("M", "")
    return replace(table, cases=cases, schema=schema, modalities=modalities, notes=[*table.notes, note])


def dermoscopy_as_clinical(table: CaseTable) -> CaseTable:
    """The table with each case's dermoscopy images as its clinical images (``data.dermoscopy_as_clinical``):
    a dermoscopy-only set trains the clinical branch, e.g. as the start of a clinical encoder."""
    if "D" not in table.modalities:
        raise ValueError(
            f"{table.name}: data.dermoscopy_as_clinical is set, but the set has no dermoscopy images "
            f"(its modalities are {table.modalities})"
        )
    if "C" in table.modalities:
        raise ValueError(
            f"{table.name}: data.dermoscopy_as_clinical is set, but the set has clinical photos of its own "
            "(it is meant for dermoscopy-only sets such as ISIC 2018); use model.modalities to choose"
        )
    cases = [replace(c, clinical=list(c.dermoscopy), dermoscopy=[]) for c in table.cases]
    modalities = "C" + table.modalities.replace("D", "")
    note = "dermoscopy images fed to the clinical branch as its photos (data.dermoscopy_as_clinical)"
    return replace(table, cases=cases, modalities=modalities, notes=[*table.notes, note])


@dataclass(frozen=True)
class BadFile:
    case_id: str
    path: str
    reason: str
    source: str = ""

    def __str__(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"case {self.case_id!r}{where}: {self.path}: {self.reason}"


def find_bad_files(
    table: CaseTable,
    verify: bool = False,
    max_pixels: int | None = None,
    indices=None,
    progress: Callable[[int, int], None] | None = None,
    modalities: str = "CD",
) -> list[BadFile]:
    """Missing image files (and, with ``verify``, unreadable or oversized ones) of the table's cases,
    among the image modalities named in ``modalities`` (C, D)."""
    max_pixels = max_pixels or DEFAULT_MAX_IMAGE_PIXELS
    bad: list[BadFile] = []
    idx = range(len(table)) if indices is None else indices
    letters = [m for m in "CD" if m in modalities.upper()]
    jobs = [(table.cases[i], p) for i in idx for m in letters for p in table.cases[i].images(m)]
    for n, (case, path) in enumerate(jobs):
        if progress is not None:
            progress(n, len(jobs))
        if not os.path.isfile(path):
            bad.append(BadFile(case.case_id, path, missing_file_reason(path), case.source))
        elif verify:
            try:
                verify_image(path, max_pixels=max_pixels, case_id=case.case_id)
            except BadImageError as e:
                bad.append(BadFile(case.case_id, path, e.reason, case.source))
    return bad


def apply_file_policy(table: CaseTable, cfg: DataConfig, modalities: str = "CDM") -> CaseTable:
    """Fail on bad image files, or (``skip_bad_cases``) drop their cases with a warning listing each.

    Only the images of ``modalities`` (the model's) are checked: a metadata-only model runs on a data
    set whose images are absent, and its notes say that they were not checked.
    """
    unread = [m for m in "CD" if m in table.modalities and m not in modalities.upper()]
    if unread:
        table = replace(table, notes=list(table.notes), skipped=list(table.skipped))
        names = " and ".join(modality_names(unread))
        table.notes.append(
            f"{names} image files not checked: the model ({modalities.upper()}) does not read them"
        )
    bad = find_bad_files(
        table, verify=cfg.verify_images, max_pixels=cfg.max_image_pixels, modalities=modalities
    )
    if not bad:
        return table
    by_case: dict[str, str] = {}
    for b in bad:
        by_case.setdefault(b.case_id, f"{b.path}: {b.reason}")
    if not cfg.skip_bad_cases:
        shown = "\n  ".join(str(b) for b in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise BadImageError(
            table.root or table.name,
            f"{len(bad)} image file(s) of {len(by_case)} case(s) are missing or unreadable:\n"
            f"  {shown}{more}\n"
            "Set skip_bad_cases=true to leave these cases out (each is listed in a warning), or run "
            "`remixformer data check` for the full list.",
        )
    per_split: dict[str, int] = {}
    for c in table.cases:
        if c.case_id in by_case:
            per_split[c.split or "all"] = per_split.get(c.split or "all", 0) + 1
    ids = sorted(by_case)
    log.warning(
        "%s: skipping %d case(s) with missing or unreadable images (%s; %d left): %s%s",
        table.name,
        len(by_case),
        ", ".join(f"{k} {v}" for k, v in sorted(per_split.items())),
        len(table) - len(by_case),
        ", ".join(ids[:20]),
        f" ... and {len(ids) - 20} more (every one in the run's data.json)" if len(ids) > 20 else "",
    )
    out = table.without_cases(by_case)
    out.notes.append(f"{len(by_case)} case(s) skipped for missing or unreadable images (skip_bad_cases)")
    emptied = [s for s in per_split if s != "all" and not any(c.split == s for c in out.cases)]
    for split in emptied:
        then = {
            "val": "validation is carved from the training cases, grouped (data.val_fraction)",
            "test": "there is nothing to test on",
        }.get(split, "that split is empty")
        out.notes.append(f"every official {split} case was skipped (no image found): {then}")
    return out


def select_tasks(table: CaseTable, names: Sequence[str] | None) -> CaseTable:
    """The table with only the tasks ``names`` (``data.tasks``; None: all), in the data set's order.
    The diagnosis is always kept; a name the data set lacks raises a ValueError naming the valid ones."""
    if names is None:
        return table
    have = [t.name for t in table.tasks]
    unknown = [n for n in names if n not in have]
    if unknown:
        raise ValueError(f"data.tasks: {table.name} has no task {unknown}; its tasks are {have}")
    keep = {DIAG, *names}
    tasks = tuple(t for t in table.tasks if t.name in keep)
    cases = [replace(c, targets={k: v for k, v in c.targets.items() if k in keep}) for c in table.cases]
    return replace(table, cases=cases, tasks=tasks)


def load_dataset(cfg: DataConfig, modalities: str = "CDM") -> CaseTable:
    """Load the data set ``cfg`` names, check its image files and apply the bad-case policy.

    Missing files (and, with ``verify_images``, unreadable ones) raise a :class:`BadImageError` listing
    them, unless ``skip_bad_cases`` is set: then their cases are dropped and a warning lists every one.
    ``modalities``: the letters the model reads; images of the other modalities are not checked (a
    metadata-only model, ``"M"``, needs no image file at all).
    """
    table = select_tasks(load_cases(cfg), cfg.tasks)
    for note in table.notes:
        log.info("%s: %s", table.name, note)
    if cfg.check_images is not None:
        extra = cfg.check_images.upper()
        if set(extra) - set("CD"):
            raise ValueError(f"data.check_images: letters of C and D expected, got {cfg.check_images!r}")
        modalities = "".join(m for m in "CDM" if m in modalities.upper() + extra)
    return apply_file_policy(table, cfg, modalities)
