"""A row of the table and the benchmark's settings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from remixformer.bench.memory.models import DEFAULT_MODELS, MODELS
from remixformer.bench.memory.probes import GiB

log = logging.getLogger(__name__)


@dataclass
class Row:
    """One row of the table. ``status``: ``ok``, ``skipped`` or ``failed``; ``note`` says why."""

    model: str
    label: str
    size: int
    batch: int
    status: str = "ok"
    note: str = ""
    predicted_peak_bytes: int | None = None
    saved_bytes: int | None = None
    saved_state_bytes: int | None = None
    saved_storages: int | None = None
    saved_packed: int | None = None
    base_rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    step_s: float | None = None
    step_times_s: list[float] = field(default_factory=list)
    step_cpu_s: float | None = None  # CPU time of the process per step (all threads): robust to sharing
    warmup_times_s: list[float] = field(default_factory=list)
    num_params: int | None = None
    threads: int | None = None
    device_name: str | None = None
    cuda_base_bytes: int | None = None
    cuda_max_allocated_bytes: int | None = None
    cuda_max_reserved_bytes: int | None = None
    cuda_total_bytes: int | None = None
    wall_s: float | None = None


_ROW_FIELDS = {f.name for f in fields(Row)}


@dataclass
class BenchSettings:
    sizes: Sequence[int] = (512, 2048)
    batches: Sequence[int] = (1, 2)
    models: Sequence[str] = DEFAULT_MODELS
    scale: str = "paper"  # "tiny": the same model families shrunk (the --quick smoke run)
    steps: int = 3
    warmup: int = 1
    step_budget_s: float = 60.0
    device: str = "cpu"
    num_classes: int = 12  # X-SkinTumor-12, the data set of the paper's Table IX
    memory_limit_bytes: int | None = None  # default: MemAvailable when the row starts
    margin_bytes: int = GiB  # kept free on top of the prediction (x 1.1)
    watchdog_floor_bytes: int | None = None  # kill a child when MemAvailable falls below (default 2%)
    row_timeout_s: float | None = None
    target_size: int = 2048
    target_batch: int = 1

    def check(self) -> None:
        unknown = sorted(set(self.models) - set(MODELS))
        if unknown:
            raise ValueError(f"unknown benchmark model(s) {unknown}; available: {sorted(MODELS)}")
        if not self.sizes or not self.batches or not self.models:
            raise ValueError("the benchmark needs at least one size, one batch size and one model")
        if min(self.sizes) <= 0 or min(self.batches) <= 0:
            raise ValueError(f"sizes {list(self.sizes)} and batches {list(self.batches)} must be positive")
        if self.scale not in ("paper", "tiny"):
            raise ValueError(f"scale must be 'paper' or 'tiny', got {self.scale!r}")
