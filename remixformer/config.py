"""Typed, layered configuration: dataclass defaults, then YAML files, then ``key=value`` overrides.

Every config in the project is a dataclass. :func:`from_dict` builds one from plain data and checks
every key and type, naming the offending key; :func:`to_dict` writes it back, so a run directory can
hold the fully resolved config that made it. No ``eval``: values in overrides are parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from remixformer.serialization import write_text_atomic

T = TypeVar("T")

BASE_KEY = "base"  # a YAML config may name a base file (relative to itself) that it extends
# A config dataclass may list renamed keys as a class attribute ``RENAMED_KEYS = {"old": "new.dotted"}``
# (the new key relative to the dataclass). The old spelling keeps working for one release: its value
# moves to the new key with a FutureWarning naming both (see :func:`apply_renames`). A class whose old
# keys defaulted to null, null meaning what leaving the new key out means, sets
# ``RENAMED_NULL_IS_DEFAULT = True``: a null under an old key is then dropped without a warning (every
# config dump written before the rename holds the old keys with their null defaults).
RENAMED_KEYS_ATTR = "RENAMED_KEYS"
RENAMED_NULL_ATTR = "RENAMED_NULL_IS_DEFAULT"


class ConfigError(ValueError):
    """A configuration value or key is wrong; the message names the key and what was expected."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} does not fit {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, where): _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot in the mantissa) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, int) and not isinstance(value, bool):  # e.g. `precision: 32`, a run name 2024
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def apply_renames(
    renamed: Mapping[str, str],
    data: Mapping[str, Any],
    where: str = "",
    warn: bool = True,
    drop_null: bool = False,
) -> dict[str, Any]:
    """``data`` with each deprecated key of ``renamed`` moved to its new (dotted) key.

    A FutureWarning names the old and the new key (unless ``warn`` is false). With ``drop_null``, a null
    under an old key is dropped without a warning. When both spellings are given, the new key wins and
    the warning says so.
    """
    out = dict(data)
    prefix = f"{where}." if where else ""
    for old, new in renamed.items():
        if old not in out:
            continue
        value = out.pop(old)
        if value is None and drop_null:
            continue
        parts = new.split(".")
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            child = dict(child) if isinstance(child, Mapping) else {}
            node[p] = child
            node = child
        given = parts[-1] in node
        if warn:
            note = f"; {prefix}{new} is also given and wins" if given else ""
            warnings.warn(
                f"config key {prefix}{old} is deprecated and will be removed in the next release; "
                f"use {prefix}{new}{note}",
                FutureWarning,
                stacklevel=3,
            )
        if not given:
            node[parts[-1]] = value
    return out


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types; missing keys keep their defaults."""
    data = dict(data or {})
    data.pop(BASE_KEY, None)
    renamed = getattr(cls, RENAMED_KEYS_ATTR, None)
    if renamed:
        data = apply_renames(renamed, data, where, drop_null=getattr(cls, RENAMED_NULL_ATTR, False))
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; "
            f"known keys{' of ' + where if where else ''}: {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from e


def to_dict(obj: Any) -> Any:
    """Plain-data (YAML/JSON-safe) copy of a config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def flatten_dict(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (to compare two configs key by key)."""
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten_dict(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge: mappings merge key by key, everything else in ``update`` replaces."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, resolving its ``base:`` chain (paths relative to the file naming them)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular 'base' chain {[str(p) for p in _seen]}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    base = data.get(BASE_KEY)
    if base:
        base_data = load_yaml(path.parent / base, _seen + (path,))
        data = deep_merge(base_data, {k: v for k, v in data.items() if k != BASE_KEY})
    return dict(data)


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["train.lr=0.01", "model.modalities=CD"]`` -> nested dict; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.max_epochs=5")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is set both as a value and as a section")
        node[parts[-1]] = value
    return out


def resolve(cls: type[T], files: Sequence[str | Path] = (), overrides: Sequence[str] = ()) -> T:
    """Defaults of ``cls``, then each YAML file in order, then the overrides."""
    data: dict[str, Any] = {}
    for f in files:
        data = deep_merge(data, load_yaml(f))
    data = deep_merge(data, parse_overrides(overrides))
    return from_dict(cls, data)


def dump_yaml(obj: Any, path: str | Path) -> None:
    """Write ``obj`` (a config dataclass) as YAML, atomically (a kill never leaves half a file)."""
    write_text_atomic(path, yaml.safe_dump(to_dict(obj), sort_keys=False))
