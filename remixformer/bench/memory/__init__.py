"""Memory and speed of one training step: the paper's Table IX, measured on the machine it runs on.

Rows: Ours-C, Ours-D, timm ViT-S/16 and timm Swin-T (all random-initialised, in training mode), one full
training step (forward, cross-entropy, backward, SGD step) per image size and batch size. Per row:

* **saved for backward**: the bytes of the distinct tensor storages that autograd saves for backward
  during the forward (:class:`SavedTensorCounter`, hooks on ``torch.autograd.graph.saved_tensors_hooks``).
  Exact and machine-independent. Parameters and buffers saved by the same hooks are included and also
  reported apart.
* **peak RSS**: the high-water mark of the resident set (``VmHWM``) of a fresh child process that runs
  only this row, so rows do not contaminate each other and a row that runs out of memory takes only
  its child down;
* **step time**: the median of the timed steps after the warm-up;
* ``torch.cuda.max_memory_allocated`` (the paper's "max memory") and ``max_memory_reserved`` when the
  row runs on a GPU.

Rows run from small to large. A row predicted not to fit in the memory available is skipped and marked;
a child that dies (killed by the kernel, by the memory watchdog or by the time limit) is marked failed,
and the run goes on. ``docs/benchmarks.md`` says what is and is not counted.

Run ``remixformer bench memory`` or ``python benchmarks/memory.py``; this package is also the child process
(``python -m remixformer.bench.memory --row ...``, ``__main__.py``).

Modules: ``counter`` (bytes saved for backward), ``models`` (the rows' models), ``probes`` (/proc and the
machine), ``measure`` (one row, in the child), ``rows`` (a row, the settings), ``runner`` (the table:
children, memory check, watchdog), ``report`` (ratios, targets, table, JSON). Everything public is
importable from here, as it was from the single module this package replaced.
"""

from remixformer.bench.memory.counter import SavedTensorCounter
from remixformer.bench.memory.measure import measure_row
from remixformer.bench.memory.models import DEFAULT_MODELS, MODELS, BenchModel
from remixformer.bench.memory.probes import GiB, MiB, machine_info, mem_available
from remixformer.bench.memory.report import (
    BASELINES,
    TARGETS,
    Target,
    check_targets,
    compute_ratios,
    format_report,
    make_report,
    write_json,
)
from remixformer.bench.memory.rows import BenchSettings, Row
from remixformer.bench.memory.runner import (
    PRIOR_BASE_BYTES,
    PRIOR_BYTES_PER_PIXEL,
    predict_peak,
    run_benchmark,
    run_row,
)

__all__ = [
    "BASELINES",
    "DEFAULT_MODELS",
    "MODELS",
    "PRIOR_BASE_BYTES",
    "PRIOR_BYTES_PER_PIXEL",
    "TARGETS",
    "BenchModel",
    "BenchSettings",
    "GiB",
    "MiB",
    "Row",
    "SavedTensorCounter",
    "Target",
    "check_targets",
    "compute_ratios",
    "format_report",
    "machine_info",
    "make_report",
    "measure_row",
    "mem_available",
    "predict_peak",
    "run_benchmark",
    "run_row",
    "write_json",
]
