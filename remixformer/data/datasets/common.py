"""Helpers the data set loaders share: finding official files, reading CSVs strictly, typing values."""

from __future__ import annotations

import fnmatch
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from remixformer.data.cases import CaseTable
from remixformer.data.images import IMAGE_EXTENSIONS
from remixformer.schema import MetadataSchema, is_blank

log = logging.getLogger(__name__)


def csv_line(row_index: int) -> int:
    """1-based line of a pandas row in its CSV file (line 1 is the header)."""
    return int(row_index) + 2


def require_dir(root: str | os.PathLike, dataset: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"{dataset}: root {str(path)!r} is not a folder; point 'root' at the data set as it unpacks"
        )
    return path


def find_files(root: Path, pattern: str) -> list[Path]:
    """Files under ``root`` (recursively) whose name matches ``pattern`` (fnmatch, case-insensitive)."""
    pat = pattern.lower()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if fnmatch.fnmatch(name.lower(), pat):
                out.append(Path(dirpath) / name)
    return sorted(out, key=lambda p: (len(p.parts), str(p)))


def find_one(
    root: Path, patterns: str | Sequence[str], dataset: str, what: str, required: bool = True
) -> Path | None:
    """The single file matching one of ``patterns``; an error naming the expected name if none."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    for pat in patterns:
        hits = find_files(root, pat)
        if len(hits) > 1:
            shallow = [h for h in hits if len(h.parts) == len(hits[0].parts)]
            if len(shallow) > 1:
                raise ValueError(
                    f"{dataset}: several files match {pat!r} for the {what} under {root}: "
                    f"{[str(h) for h in shallow[:5]]}; keep one"
                )
            log.info(
                "%s: using %s for the %s (also found %d deeper copies)", dataset, hits[0], what, len(hits) - 1
            )
        if hits:
            return hits[0]
    if required:
        raise ValueError(f"{dataset}: no {what} under {root} (expected a file named like {patterns[0]!r})")
    return None


def read_csv(path: Path, dataset: str, required: Sequence[str] = (), what: str = "") -> pd.DataFrame:
    """Read a CSV as strings (blank cells -> NaN) and check that ``required`` columns exist."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{dataset}: {path}: not a readable CSV file: {e}") from e
    except pd.errors.EmptyDataError:
        raise ValueError(f"{dataset}: {path}: the file is empty") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"{dataset}: {path}: missing column(s) {missing}{' for ' + what if what else ''}; "
            f"expected columns {list(required)}, found {list(df.columns)}"
        )
    return df


def cell(value: Any) -> str | None:
    """A CSV cell as a stripped string, ``None`` when blank."""
    if is_blank(value):
        return None
    return str(value).strip()


def parse_bool(value: Any, where: str, unknown: Iterable[str] = ("UNK",)) -> bool | None:
    """``True``/``False`` strings -> bool; blanks and ``unknown`` tokens -> None; anything else raises."""
    text = cell(value)
    if text is None or text in set(unknown):
        return None
    low = text.lower()
    if low in ("true", "1", "1.0"):
        return True
    if low in ("false", "0", "0.0"):
        return False
    raise ValueError(f"{where}: expected True, False or blank, got {text!r}")


def parse_float(value: Any, where: str) -> float | None:
    text = cell(value)
    if text is None:
        return None
    try:
        x = float(text)
    except ValueError:
        raise ValueError(f"{where}: expected a number or blank, got {text!r}") from None
    return None if math.isnan(x) else x


def parse_binary(value: Any, where: str) -> int:
    """A 0/1 (or 0.0/1.0) ground-truth cell -> 0 or 1."""
    text = cell(value)
    try:
        x = float(text) if text is not None else math.nan
    except ValueError:
        x = math.nan
    if x not in (0.0, 1.0):
        raise ValueError(f"{where}: expected 0 or 1, got {text!r}")
    return int(x)


def index_images(root: Path, exclude: Sequence[str] = ()) -> dict[str, Path]:
    """Map image file stem -> path for every image under ``root`` (first in sorted order wins).

    ``exclude``: substrings of file names that are not case images (masks, superpixels).
    """
    out: dict[str, Path] = {}
    dupes = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS or any(x in name for x in exclude):
                continue
            if stem in out:
                dupes += 1
                continue
            out[stem] = Path(dirpath) / name
    if dupes:
        log.info(
            "%s: %d image file names occur in more than one folder; the first in sorted order is used",
            root,
            dupes,
        )
    return out


def split_schema(
    schema: MetadataSchema, leaky: Sequence[str], include: Sequence[str], dataset: str
) -> tuple[MetadataSchema, list[str]]:
    """Drop leaky fields unless the user named them; returns (schema, leaky fields included)."""
    unknown = sorted(set(include) - set(schema.field_names))
    if unknown:
        raise ValueError(
            f"{dataset}: include_leaky_fields names {unknown}, which are not metadata fields of this "
            f"data set; "
            f"its leaky fields are {list(leaky)}"
        )
    included = [f for f in leaky if f in set(include)]
    if included:
        log.warning(
            "%s: leaky metadata field(s) %s included as inputs at the user's request", dataset, included
        )
    dropped = [f for f in leaky if f not in set(include)]
    return schema.without(dropped), included


def modalities_of(table_cases: Sequence[Any], schema: MetadataSchema) -> str:
    letters = ""
    if any(c.clinical for c in table_cases):
        letters += "C"
    if any(c.dermoscopy for c in table_cases):
        letters += "D"
    if len(schema):
        letters += "M"
    return letters


def unseen_sources(table: CaseTable) -> dict[str, dict[str, list[str]]]:
    """Field -> {raw value: where each case holding it was read (``manifest.csv line 4``, or its id)}."""
    out: dict[str, dict[str, list[str]]] = {}
    for f in table.schema.fields:
        for c in table.cases:
            raw = c.metadata.get(f.name)
            if f.lookup(raw)[1] == "unseen":
                out.setdefault(f.name, {}).setdefault(str(raw), []).append(c.source or f"case {c.case_id!r}")
    return out


def blank_counts(table: CaseTable) -> dict[str, int]:
    """Field -> number of cases whose value is blank (or an alias of unknown)."""
    out = {}
    for f in table.schema.fields:
        n = sum(f.lookup(c.metadata.get(f.name))[1] == "blank" for c in table.cases)
        if n:
            out[f.name] = n
    return out


def restrict_metadata(metadata: Mapping[str, Any], schema: MetadataSchema) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if k in schema}
