"""Counting the bytes that autograd saves for backward (exact, machine-independent)."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from typing import Any

import torch

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Counting the bytes saved for backward
# --------------------------------------------------------------------------------------------------


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class SavedTensorCounter:
    """Counts the distinct storages that autograd saves for backward while the context is open.

    Every tensor autograd saves goes through the pack hook, which hands it back (a detached alias of the
    same storage) and records the storage, keyed by its data pointer: a tensor saved twice, or two views
    of one storage, count once, and a view counts its whole storage (that is what stays in memory). A
    storage counts when the context closes only if a saved tensor on it is still alive, so parts of the
    graph that the forward already dropped do not count. Storages of ``state`` (parameters, buffers) are
    counted too and also reported apart, as ``state_bytes``.

    Inside a region under non-reentrant activation checkpointing, checkpoint's own hooks take over: the
    activations there are recomputed in backward, not saved, and are not seen. The region's inputs are
    saved by checkpoint before its hooks apply, so they are seen and counted.
    """

    def __init__(self, state: Iterable[torch.Tensor] = ()) -> None:
        self._state = {_storage_key(t) for t in state}
        self._seen: dict[int, tuple[int, list[weakref.ref]]] = {}  # data_ptr -> (nbytes, saved tensors)
        self._hooks: Any = None
        self.packed = 0  # tensors packed, duplicates included
        self.bytes = 0  # distinct storages still referenced when the context closed
        self.state_bytes = 0  # of which parameters and buffers
        self.storages = 0

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        # Hand autograd a detached alias (same storage, no grad_fn): returning ``t`` itself would tie a
        # saved output to its own grad_fn in a reference cycle and keep dropped graphs alive.
        saved = t.detach()
        self.packed += 1
        storage = saved.untyped_storage()
        nbytes = storage.nbytes()
        if nbytes and saved.device.type != "meta":
            key = storage.data_ptr()
            old, refs = self._seen.get(key, (0, []))
            refs.append(weakref.ref(saved))
            self._seen[key] = (max(old, nbytes), refs)
        return saved

    def __enter__(self) -> SavedTensorCounter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._hooks.__exit__(*exc)
        self._hooks = None
        alive = {k: n for k, (n, refs) in self._seen.items() if any(r() is not None for r in refs)}
        self.bytes = sum(alive.values())
        self.state_bytes = sum(n for k, n in alive.items() if k in self._state)
        self.storages = len(alive)
        self._seen.clear()


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t
