"""Metadata schema: ordered fields, their allowed values, and the one-hot encoding the model reads.

Every field gets one slot per allowed value plus a final "unknown" slot that blanks, NaN, ``None`` and
values outside the schema fall into. Three kinds of field:

- ``categorical``: a list of values; raw strings match exactly, then case-insensitively; ``aliases``
  map other spellings to a value (or to ``null`` = unknown, e.g. PAD-UFES-20's ``UNK``).
- ``boolean``: values ``False``, ``True``; accepts Python bools, ``True``/``False``/``yes``/``no``/
  ``1``/``0`` strings and numbers.
- ``numeric``: a number cut into bins by ``bins`` (ascending edges ``e_0 < ... < e_k``): value ``v``
  lands in ``"<e_0"``, ``"e_{i-1}-e_i"`` (meaning ``e_{i-1} <= v < e_i``) or ``">=e_k"``; ``labels``
  may rename the ``k + 1`` bins. The paper's metadata branch is a one-hot embedding, so numbers are
  binned rather than fed raw. A number is a plain decimal (``47``, ``-1.5``, ``4.7e1``): no ``nan``,
  ``inf``, ``1_000`` or hexadecimal. ``range: [lo, hi]`` (optional, inclusive) bounds the values a
  field can take (age: 0 to 120 years); a number outside it is a value outside the schema.
  ``encoding: linear`` (optional) reads ``bins`` as knots ``k_0 < ... < k_m`` instead of bin edges: a
  value between ``k_i`` and ``k_{i+1}`` is split over their two slots in proportion to its distance
  from each (``v = k_i`` is ``k_i``'s slot alone; values beyond the end knots count as the end knots),
  so a linear layer over the slots is any piecewise-linear function of the number, where one-hot bins
  give a step function. It suits scores whose every hundredth matters (MILK10k's MONET concept
  probabilities: docs/milk10k.md measures both encodings).

A schema is plain data (:meth:`MetadataSchema.to_dict`), stored in model checkpoints; serving uses
:meth:`MetadataSchema.validate` to reject unknown fields and values.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CATEGORICAL = "categorical"
BOOLEAN = "boolean"
NUMERIC = "numeric"
KINDS = (CATEGORICAL, BOOLEAN, NUMERIC)
BINNED = "bins"  # numeric encodings: one-hot bins (the paper's), or interpolation between knots
LINEAR = "linear"
ENCODINGS = (BINNED, LINEAR)
UNKNOWN = "<unknown>"  # name of the unknown slot in feature names

# a plain decimal number, as a person or a spreadsheet writes it (float() would also take "nan", "inf",
# "1_000" and "١٢")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = {"true", "yes", "y", "t", "1", "1.0"}
_FALSE = {"false", "no", "n", "f", "0", "0.0"}

# Bins shared by the public data sets (documented in docs/data.md).
AGE_BINS = (20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0)  # years: <20, 20-30, ..., 70-80, >=80
AGE_RANGE = (0.0, 120.0)  # years: an age outside it is a typo or a unit error, not a bin


def is_blank(value: Any) -> bool:
    """True for ``None``, NaN and empty or whitespace-only strings."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, np.floating) and np.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    return False


def _fmt(x: float) -> str:
    return f"{x:g}"


def _default_labels(bins: Sequence[float], encoding: str) -> tuple[str, ...]:
    return tuple(_fmt(k) for k in bins) if encoding == LINEAR else _bin_labels(bins)


def _bin_labels(bins: Sequence[float]) -> tuple[str, ...]:
    labels = [f"<{_fmt(bins[0])}"]
    labels += [f"{_fmt(a)}-{_fmt(b)}" for a, b in zip(bins[:-1], bins[1:])]
    labels.append(f">={_fmt(bins[-1])}")
    return tuple(labels)


@dataclass(frozen=True)
class MetadataField:
    """One metadata field; ``values`` are the one-hot slots before the unknown slot."""

    name: str
    kind: str = CATEGORICAL
    values: tuple[str, ...] = ()
    bins: tuple[float, ...] = ()  # numeric only: bin edges, or knots with encoding "linear"
    value_range: tuple[float, float] | None = None  # numeric only: the smallest and largest valid value
    encoding: str = BINNED  # numeric only: "bins" (one-hot) or "linear" (interpolated between knots)
    aliases: Mapping[str, str | None] = field(default_factory=dict)  # categorical only
    description: str = ""

    # lookup tables, set in __post_init__ (the dataclass is frozen); not compared, shown or passed in
    _exact: dict[str, int] = field(init=False, repr=False, compare=False)
    _lower: dict[str, int] = field(init=False, repr=False, compare=False)
    _alias: dict[str, int | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"metadata field: name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(
                f"metadata field {self.name!r}: kind must be one of {list(KINDS)}, got {self.kind!r}"
            )
        values = tuple(str(v) for v in self.values)
        bins = tuple(float(b) for b in self.bins)
        value_range = None
        if self.value_range is not None:
            if self.kind != NUMERIC:
                raise ValueError(f"metadata field {self.name!r}: only a numeric field may have a 'range'")
            try:
                lo, hi = (float(x) for x in self.value_range)
            except (TypeError, ValueError):
                raise ValueError(
                    f"metadata field {self.name!r}: range must be [smallest, largest], "
                    f"got {self.value_range!r}"
                ) from None
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(
                    f"metadata field {self.name!r}: range must be two finite numbers, smallest first, "
                    f"got {[lo, hi]}"
                )
            value_range = (lo, hi)
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"metadata field {self.name!r}: encoding must be one of {list(ENCODINGS)}, "
                f"got {self.encoding!r}"
            )
        if self.encoding != BINNED and self.kind != NUMERIC:
            raise ValueError(f"metadata field {self.name!r}: only a numeric field may have an 'encoding'")
        if self.kind == BOOLEAN:
            if values and values != ("False", "True"):
                raise ValueError(f"metadata field {self.name!r}: a boolean field has values [False, True]")
            values = ("False", "True")
        elif self.kind == NUMERIC:
            if not bins:
                raise ValueError(
                    f"metadata field {self.name!r}: a numeric field needs 'bins' (ascending edges)"
                )
            if any(b2 <= b1 for b1, b2 in zip(bins[:-1], bins[1:])) or not all(map(math.isfinite, bins)):
                raise ValueError(
                    f"metadata field {self.name!r}: bins must be finite and ascending, got {list(bins)}"
                )
            n_slots = len(bins) if self.encoding == LINEAR else len(bins) + 1
            if self.encoding == LINEAR and len(bins) < 2:
                raise ValueError(
                    f"metadata field {self.name!r}: encoding 'linear' needs at least two knots in 'bins'"
                )
            if not values:
                values = _default_labels(bins, self.encoding)
            elif len(values) != n_slots:
                what = "knots" if self.encoding == LINEAR else f"bin edges make {n_slots} bins"
                raise ValueError(
                    f"metadata field {self.name!r}: {len(bins)} {what}, but {len(values)} labels were given"
                )
        elif not values:
            raise ValueError(f"metadata field {self.name!r}: a categorical field needs a list of 'values'")
        if len(set(values)) != len(values):
            raise ValueError(f"metadata field {self.name!r}: repeated values {list(values)}")
        aliases = {str(k): (None if v is None else str(v)) for k, v in dict(self.aliases).items()}
        for k, v in aliases.items():
            if v is not None and v not in values:
                raise ValueError(
                    f"metadata field {self.name!r}: alias {k!r} -> {v!r} names no value; "
                    f"values are {list(values)}"
                )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "value_range", value_range)
        object.__setattr__(self, "aliases", aliases)
        lowered: dict[str, int] = {}
        for i, v in enumerate(values):
            lowered.setdefault(v.strip().lower(), i)
        alias_idx = {k.strip().lower(): (None if v is None else values.index(v)) for k, v in aliases.items()}
        object.__setattr__(self, "_exact", {v: i for i, v in enumerate(values)})
        object.__setattr__(self, "_lower", lowered)
        object.__setattr__(self, "_alias", alias_idx)

    @property
    def width(self) -> int:
        """Number of one-hot slots, the unknown slot included."""
        return len(self.values) + 1

    def lookup(self, raw: Any) -> tuple[int | None, str]:
        """Slot index of a raw value and how it was read: ``"ok"``, ``"blank"`` or ``"unseen"``.

        ``None`` as index means the unknown slot.
        """
        if is_blank(raw):
            return None, "blank"
        if self.kind == NUMERIC:
            return self._lookup_numeric(raw)
        if self.kind == BOOLEAN:
            return self._lookup_bool(raw)
        text = str(raw)
        if text in self._exact:
            return self._exact[text], "ok"
        key = text.strip().lower()
        if key in self._alias:
            idx = self._alias[key]
            return idx, ("ok" if idx is not None else "blank")
        if key in self._lower:
            return self._lower[key], "ok"
        return None, "unseen"

    def _lookup_bool(self, raw: Any) -> tuple[int | None, str]:
        if isinstance(raw, (bool, np.bool_)):
            return int(bool(raw)), "ok"
        if isinstance(raw, (int, float, np.integer, np.floating)) and float(raw) in (0.0, 1.0):
            return int(float(raw)), "ok"
        key = str(raw).strip().lower()
        if key in self._alias:
            idx = self._alias[key]
            return idx, ("ok" if idx is not None else "blank")
        if key in _TRUE:
            return 1, "ok"
        if key in _FALSE:
            return 0, "ok"
        return None, "unseen"

    def _lookup_numeric(self, raw: Any) -> tuple[int | None, str]:
        if isinstance(raw, str):
            key = raw.strip().lower()
            if key in self._alias:
                idx = self._alias[key]
                return idx, ("ok" if idx is not None else "blank")
            if key in self._lower:  # a bin label given directly, e.g. "20-30"
                return self._lower[key], "ok"
        if isinstance(raw, (bool, np.bool_)):
            return None, "unseen"
        if isinstance(raw, str):
            if not _NUMBER.fullmatch(raw.strip()):
                return None, "unseen"  # "nan", "inf", "1_000", "0x10", words
        elif not isinstance(raw, (int, float, np.integer, np.floating)):
            return None, "unseen"
        x = float(raw)
        if math.isnan(x):  # a float NaN (a blank cell read by pandas) is caught by is_blank first
            return None, "blank"
        if not self.in_range(x):
            return None, "unseen"
        if self.encoding == LINEAR:  # the nearest knot (encode() splits the value over two knots)
            return int(np.argmin(np.abs(np.asarray(self.bins) - x))), "ok"
        return int(np.searchsorted(np.asarray(self.bins), x, side="right")), "ok"

    def interpolate(self, raw: Any) -> list[tuple[int, float]] | None:
        """Encoding ``linear``: ``[(slot, weight), ...]`` of a number (weights sum to 1), ``None`` when
        the value is blank, unseen or not a number (it then goes to the unknown slot)."""
        idx, status = self.lookup(raw)
        if idx is None or status != "ok":
            return None
        try:
            x = float(raw)
        except (TypeError, ValueError):
            return [(idx, 1.0)]  # a knot label given directly
        knots = self.bins
        x = min(max(x, knots[0]), knots[-1])
        i = min(int(np.searchsorted(np.asarray(knots), x, side="right")) - 1, len(knots) - 2)
        t = (x - knots[i]) / (knots[i + 1] - knots[i])
        return [(i, 1.0 - t), (i + 1, t)] if t > 0 else [(i, 1.0)]

    def in_range(self, x: float) -> bool:
        """A finite number inside ``value_range`` (when the field has one)."""
        if not math.isfinite(x):
            return False
        return self.value_range is None or self.value_range[0] <= x <= self.value_range[1]

    def expected(self) -> str:
        """What the field accepts, for messages."""
        if self.kind != NUMERIC:
            return str(list(self.values))
        where = ""
        if self.value_range is not None:
            where = f" from {_fmt(self.value_range[0])} to {_fmt(self.value_range[1])}"
        if self.encoding == LINEAR:
            return f"a number{where} (interpolated between {list(self.values)})"
        return f"a number{where} (binned {list(self.values)}) or a bin label"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == NUMERIC:
            d["bins"] = list(self.bins)
            if self.values != _default_labels(self.bins, self.encoding):
                d["labels"] = list(self.values)
            if self.value_range is not None:
                d["range"] = list(self.value_range)
            if self.encoding != BINNED:
                d["encoding"] = self.encoding
        elif self.kind == CATEGORICAL:
            d["values"] = list(self.values)
        if self.aliases:
            d["aliases"] = dict(self.aliases)
        if self.description:
            d["description"] = self.description
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> MetadataField:
        where = where or f"field {d.get('name')!r}"
        known = {
            "name",
            "kind",
            "values",
            "bins",
            "labels",
            "range",
            "encoding",
            "aliases",
            "description",
            "leaky",
        }
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        if "name" not in d:
            raise ValueError(f"{where}: missing 'name'")
        kind = d.get("kind", CATEGORICAL)
        values = d.get("labels", d.get("values", ()))
        if isinstance(values, str) or not isinstance(values, Iterable):
            raise ValueError(f"{where}: 'values' must be a list, got {values!r}")
        try:
            return cls(
                name=str(d["name"]),
                kind=kind,
                values=tuple(values),
                bins=tuple(d.get("bins", ())),
                value_range=d.get("range"),
                encoding=str(d.get("encoding", BINNED)),
                aliases=dict(d.get("aliases", {}) or {}),
                description=str(d.get("description", "")),
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e


class MetadataSchema:
    """Ordered metadata fields and their one-hot encoding (one unknown slot per field)."""

    def __init__(self, fields: Sequence[MetadataField] = (), name: str = "") -> None:
        names = [f.name for f in fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metadata schema {name!r}: repeated field names {dupes}")
        self.fields: tuple[MetadataField, ...] = tuple(fields)
        self.name = name
        self._by_name = {f.name: f for f in self.fields}
        self._slices: dict[str, slice] = {}
        start = 0
        for f in self.fields:
            self._slices[f.name] = slice(start, start + f.width)
            start += f.width
        self._dim = start

    # --- structure -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Width of the encoded vector: sum over fields of (number of values + 1)."""
        return self._dim

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> MetadataField:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no metadata field {name!r}; fields are {self.field_names}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MetadataSchema) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"MetadataSchema(name={self.name!r}, fields={self.field_names}, dim={self.dim})"

    def field_slices(self) -> dict[str, slice]:
        """Field name -> its slice of the encoded vector (its unknown slot is the slice's last entry)."""
        return dict(self._slices)

    def feature_names(self) -> list[str]:
        """One name per encoded slot, ``field=value`` and ``field=<unknown>``."""
        return [f"{f.name}={v}" for f in self.fields for v in (*f.values, UNKNOWN)]

    def without(self, names: Iterable[str]) -> MetadataSchema:
        drop = set(names)
        return MetadataSchema([f for f in self.fields if f.name not in drop], name=self.name)

    # --- encoding ------------------------------------------------------------------------------
    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        """One-hot float32 vector of shape ``(dim,)``; absent, blank or unseen values -> unknown slot.

        Keys of ``values`` that are not schema fields are ignored here; use :meth:`validate` to reject them.
        """
        out = np.zeros(self._dim, dtype=np.float32)
        for f in self.fields:
            raw = values.get(f.name)
            sl = self._slices[f.name]
            if f.encoding == LINEAR:
                parts = f.interpolate(raw)
                for idx, w in parts or [(f.width - 1, 1.0)]:
                    out[sl.start + idx] += w
                continue
            idx, _ = f.lookup(raw)
            out[sl.start + (f.width - 1 if idx is None else idx)] = 1.0
        return out

    def encode_many(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``(len(records), dim)`` float32 matrix."""
        if not records:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.stack([self.encode(r) for r in records])

    def known_mask(self, values: Mapping[str, Any]) -> bool:
        """True when at least one field has a known (non-unknown) value."""
        return any(f.lookup(values.get(f.name))[0] is not None for f in self.fields)

    def decode(self, vector: np.ndarray) -> dict[str, str | None]:
        """Inverse of :meth:`encode` for one vector: field -> value name, ``None`` for unknown."""
        out: dict[str, str | None] = {}
        for f in self.fields:
            sl = self._slices[f.name]
            i = int(np.argmax(np.asarray(vector)[sl]))
            out[f.name] = None if i == f.width - 1 else f.values[i]
        return out

    def validate(self, values: Mapping[str, Any]) -> dict[str, str | None]:
        """Check raw input strictly, as serving must: unknown field names or values raise ``ValueError``.

        Blank and missing fields are allowed (they encode as unknown). Returns field -> value name.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"metadata must be a mapping of field -> value, got {type(values).__name__}")
        problems = []
        extra = sorted(str(k) for k in values if k not in self._by_name)
        if extra:
            problems.append(f"unknown field(s) {extra}; fields are {self.field_names}")
        out: dict[str, str | None] = {}
        for f in self.fields:
            raw = values.get(f.name)
            idx, status = f.lookup(raw)
            if status == "unseen":
                problems.append(
                    f"field {f.name!r}: value {raw!r} is not allowed; expected {f.expected()} or blank"
                )
            out[f.name] = None if idx is None else f.values[idx]
        if problems:
            raise ValueError("metadata: " + "; ".join(problems))
        return out

    # --- plain data ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"fields": [f.to_dict() for f in self.fields]}
        if self.name:
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "metadata schema") -> MetadataSchema:
        if not isinstance(d, Mapping) or "fields" not in d:
            raise ValueError(f"{where}: expected a mapping with a 'fields' list")
        fields = d["fields"]
        if isinstance(fields, (str, bytes)) or not isinstance(fields, Sequence):
            raise ValueError(f"{where}: 'fields' must be a list")
        parsed = []
        for i, fd in enumerate(fields):
            if not isinstance(fd, Mapping):
                raise ValueError(f"{where}: fields[{i}] must be a mapping, got {fd!r}")
            parsed.append(MetadataField.from_dict(fd, where=f"{where}: fields[{i}] ({fd.get('name')!r})"))
        return cls(parsed, name=str(d.get("name", "")))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")


def categorical(
    name: str, values: Sequence[str], aliases: Mapping[str, str | None] | None = None, description: str = ""
) -> MetadataField:
    return MetadataField(
        name, CATEGORICAL, tuple(values), aliases=dict(aliases or {}), description=description
    )


def boolean(
    name: str, aliases: Mapping[str, str | None] | None = None, description: str = ""
) -> MetadataField:
    return MetadataField(name, BOOLEAN, aliases=dict(aliases or {}), description=description)


def numeric(
    name: str,
    bins: Sequence[float],
    labels: Sequence[str] = (),
    aliases: Mapping[str, str | None] | None = None,
    description: str = "",
    value_range: tuple[float, float] | None = None,
    encoding: str = BINNED,
) -> MetadataField:
    return MetadataField(
        name,
        NUMERIC,
        tuple(labels),
        bins=tuple(bins),
        value_range=value_range,
        encoding=encoding,
        aliases=dict(aliases or {}),
        description=description,
    )
