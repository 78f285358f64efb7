"""Safe, atomic storage: tensors in safetensors, everything else as JSON. Nothing is ever unpickled.

* :func:`atomic_write` writes through a temporary file in the same folder and ``os.replace``: a kill
  during a write leaves the previous file intact, never a half-written one. The temporary files a kill
  leaves behind (``.<name>.<random>.tmp``) are removed by :func:`remove_temporary_files`, which the
  runs call on their folders when they start.
* :func:`save_tree` / :func:`load_tree` store a nested structure of dicts, lists, tuples, numbers,
  strings and tensors (a training state: optimizer, schedulers, loops) as one safetensors file: the
  tensors as tensors, the structure as JSON in the header metadata.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from remixformer.faults import pause_point

TREE_KEY = "remixformer.tree"
TMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, of the wrong kind, or does not fit the model."""


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the temporary file over ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        pause_point(f"write:{path.name}")
        write(tmp_path)
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        pause_point(f"replace:{path.name}")
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``Path(path).write_text(text)``, atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files of atomic writes that a kill interrupted (``.<name>.*.tmp``, empty or
    not) directly in ``folder``; returns them. Only for a folder no other process is writing to."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _standalone(t: torch.Tensor) -> torch.Tensor:
    """A CPU tensor owning exactly its own storage (safetensors refuses views that share memory)."""
    t = t.detach().to("cpu")
    if not t.is_contiguous() or t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone(memory_format=torch.contiguous_format)
    return t


def save_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Atomically write ``tensors`` (made contiguous, on CPU) with string ``metadata`` as safetensors."""
    plain = {k: _standalone(v) for k, v in tensors.items()}
    return atomic_write(path, lambda p: save_file(plain, str(p), metadata=dict(metadata)))


def read_safetensors(path: str | Path, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and header metadata of a safetensors file (CheckpointError, naming it, if unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a readable safetensors file ({e}); it may be truncated or of another format"
        ) from e
    return tensors, meta


def _encode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj
        return {"__tensor__": name}
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"__float__": repr(obj)}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj) and not any(
            k.startswith("__") and k.endswith("__") for k in obj
        ):
            return {k: _encode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
        return {
            "__items__": [
                [_encode(k, tensors, where), _encode(v, tensors, f"{where}.{k}")] for k, v in obj.items()
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _encode(obj.item(), tensors, where)
    raise CheckpointError(f"cannot store {where} of type {type(obj).__name__} without pickling")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__float__" in obj:
            return float(obj["__float__"])
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__items__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


def save_tree(path: str | Path, tree: Any, metadata: Mapping[str, str] | None = None) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(tree, tensors, "checkpoint")
    meta = dict(metadata or {})
    meta[TREE_KEY] = json.dumps(encoded)
    return save_tensors(path, tensors, meta)


def load_tree(path: str | Path, device: str = "cpu") -> Any:
    tensors, meta = read_safetensors(path, device)
    if TREE_KEY not in meta:
        raise CheckpointError(f"{path}: not a remixformer training-state file (no '{TREE_KEY}' header)")
    return _decode(json.loads(meta[TREE_KEY]), tensors)
