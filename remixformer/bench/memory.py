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

Run ``remixformer bench memory`` or ``python benchmarks/memory.py``; this module is also the child process
(``python -m remixformer.bench.memory --row ...``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from remixformer import keys
from remixformer.models.registry import create_model, resolve_config

log = logging.getLogger(__name__)

MiB = 2**20
GiB = 2**30

# The directory holding the ``remixformer`` package; put first on the child's path so that the child
# imports the same code as the parent.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


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


# --------------------------------------------------------------------------------------------------
# The models of Table IX
# --------------------------------------------------------------------------------------------------

Forward = Callable[["torch.Tensor"], "torch.Tensor"]  # images (B, 3, S, S) -> logits (B, n)

# timm models shrunk for --quick (CI smoke runs): the same families, a few thousand parameters
_TINY_TIMM: dict[str, dict[str, Any]] = {
    "vit_small_patch16_224": {"embed_dim": 32, "depth": 2, "num_heads": 2},
    "swin_tiny_patch4_window7_224": {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2)},
}
_SECTIONS = {"C": "clinical", "D": "dermoscopy"}


@dataclass(frozen=True)
class BenchModel:
    """One model of the table. ``arch``: a modality letter of ours (built from the ``remixformer_paper``
    preset, ``remixformer_tiny`` at the tiny scale, with the image size and ``overrides`` of its config
    section) or a timm model name (built at ``img_size=S``)."""

    key: str
    label: str
    description: str
    arch: str
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        return self.arch in _SECTIONS

    def _model_args(self, size: int, scale: str) -> dict[str, Any]:
        preset = "remixformer_tiny" if scale == "tiny" else "remixformer_paper"
        section = {"image_size": size, **self.overrides}
        return {"name": preset, "modalities": self.arch, _SECTIONS[self.arch]: section}

    def config(self, size: int, scale: str):
        return resolve_config(**self._model_args(size, scale))

    def build(self, size: int, num_classes: int, scale: str) -> tuple[torch.nn.Module, Forward]:
        """The model, random-initialised, and its forward from images to diagnosis logits."""
        if not self.ours:
            import timm

            kwargs = dict(_TINY_TIMM[self.arch]) if scale == "tiny" else {}
            # img_size is all timm needs: patch and position embeddings follow it, and Swin keeps its 7x7
            # windows, padding each stage's grid up to a multiple of 7 as the original Swin does.
            model = timm.create_model(self.arch, img_size=size, num_classes=num_classes, **kwargs)
            return model, model
        model = create_model(**self._model_args(size, scale), tasks=num_classes)
        key = keys.CLINICAL if self.arch == "C" else keys.DERMOSCOPY

        def forward(x: torch.Tensor) -> torch.Tensor:
            return model({key: x})[keys.LOGITS]["diag"]

        return model, forward

    def pixels_in_flight(self, size: int, batch: int, scale: str) -> int:
        """Input pixels whose activations are in memory together during a step: what the memory check
        scales a measured row by (:func:`predict_peak`). A whole-image model holds every pixel; Ours-C its
        global copy and its crops, whatever the photo's size; Ours-D one chunk of windows (recomputed in
        backward), plus the image and one vector per window."""
        if not self.ours:
            return batch * size * size
        cfg = self.config(size, scale)
        if self.arch == "C":
            c = cfg.clinical
            return batch * (c.global_size**2 + (c.num_samples or c.num_crops) * c.crop_size**2)
        d = cfg.dermoscopy
        windows = batch * (size // d.window_size) ** 2
        in_flight = min(windows, d.window_chunk_size) if d.checkpoint_windows else windows
        return in_flight * d.window_size**2 + batch * size**2 // 64


MODELS: dict[str, BenchModel] = {
    m.key: m
    for m in (
        BenchModel("ours_c", "Ours-C", "remixformer_paper C: photo S^2, global copy 384^2, crops 224^2", "C"),
        BenchModel("ours_d", "Ours-D", "remixformer_paper D: 256^2 windows, HRWE, checkpointed chunks", "D"),
        BenchModel("vit_s16", "ViT-S/16", "timm ViT-S/16 at img_size=S", "vit_small_patch16_224"),
        BenchModel(
            "swin_t",
            "Swin-T",
            "timm Swin-T at img_size=S (7x7 windows, padded grids)",
            "swin_tiny_patch4_window7_224",
        ),
        # variants beyond Table IX: the memory / time knobs of our branches
        BenchModel(
            "ours_c_ckpt",
            "Ours-C+ckpt",
            "Ours-C, its Swin blocks checkpointed",
            "C",
            {"grad_checkpointing": True},
        ),
        BenchModel(
            "ours_d_chunk4",
            "Ours-D chunk 4",
            "Ours-D, 4 windows per checkpointed chunk",
            "D",
            {"window_chunk_size": 4},
        ),
        BenchModel(
            "ours_d_chunk1",
            "Ours-D chunk 1",
            "Ours-D, 1 window per checkpointed chunk",
            "D",
            {"window_chunk_size": 1},
        ),
    )
}
DEFAULT_MODELS = ("ours_c", "ours_d", "vit_s16", "swin_t")  # the paper's Table IX


# --------------------------------------------------------------------------------------------------
# One row, measured in a child process
# --------------------------------------------------------------------------------------------------


def _proc_status(field_name: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM) in bytes; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def mem_available() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where there is no /proc)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _peak_rss() -> int:
    hwm = _proc_status("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def measure_row(
    model: str,
    size: int,
    batch: int,
    *,
    scale: str = "paper",
    steps: int = 3,
    warmup: int = 1,
    step_budget_s: float = 60.0,
    device: str = "cpu",
    num_classes: int = 12,
    seed: int = 0,
) -> dict[str, Any]:
    """Build one model and measure its training steps in this process (call it in a fresh one).

    The first warm-up step counts the bytes saved for backward; then up to ``steps`` steps are timed,
    stopping early (after at least one) once the timed steps took ``step_budget_s`` in total.
    """
    torch.manual_seed(seed)
    spec = MODELS[model]
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    net, forward = spec.build(size, num_classes, scale)
    net = net.to(dev).train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, num_classes, (batch,), device=dev)
    state = [*net.parameters(), *net.buffers()]
    counter = SavedTensorCounter(state)
    if cuda:
        torch.cuda.synchronize(dev)
    base_rss = _proc_status("VmRSS") or 0
    cuda_base = torch.cuda.memory_allocated(dev) if cuda else None

    def step(count: bool = False) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        with counter if count else nullcontext():
            loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0, time.process_time() - c0

    warmup_times = [step(count=i == 0)[0] for i in range(max(1, warmup))]
    times: list[float] = []
    cpu_times: list[float] = []
    for _ in range(max(1, steps)):
        wall, cpu = step()
        times.append(wall)
        cpu_times.append(cpu)
        if sum(times) >= step_budget_s:
            break
    result: dict[str, Any] = {
        "saved_bytes": counter.bytes,
        "saved_state_bytes": counter.state_bytes,
        "saved_storages": counter.storages,
        "saved_packed": counter.packed,
        "base_rss_bytes": base_rss,
        "peak_rss_bytes": _peak_rss(),
        "step_s": statistics.median(times),
        "step_times_s": times,
        "step_cpu_s": statistics.median(cpu_times),
        "warmup_times_s": warmup_times,
        "num_params": sum(p.numel() for p in net.parameters()),
        "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(dev)
        if cuda
        else platform.processor() or platform.machine(),
    }
    if cuda:
        _, total = torch.cuda.mem_get_info(dev)
        result.update(
            cuda_base_bytes=cuda_base,
            cuda_max_allocated_bytes=torch.cuda.max_memory_allocated(dev),
            cuda_max_reserved_bytes=torch.cuda.max_memory_reserved(dev),
            cuda_total_bytes=total,
        )
    return result


# --------------------------------------------------------------------------------------------------
# The table: rows in child processes, the memory check, the watchdog
# --------------------------------------------------------------------------------------------------


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


# Used for a model's first row, before any row of it was measured: interpreter, torch and the model, plus
# a generous activation cost per pixel in flight (whole-image ViT-S and Swin-T measure 1.5-3 KiB).
PRIOR_BASE_BYTES = int(1.5 * GiB)
PRIOR_BYTES_PER_PIXEL = 4096


def predict_peak(model: str, size: int, batch: int, scale: str, done: Sequence[Row]) -> tuple[int, str]:
    """Predicted peak RSS of a row and how it was predicted.

    From the measured row of the same model with the most pixels in flight: its RSS before the first
    step plus its growth during the steps, scaled by the ratio of pixels in flight. Without one, a prior.
    """
    spec = MODELS[model]
    px = spec.pixels_in_flight(size, batch, scale)
    refs = [r for r in done if r.model == model and r.status == "ok" and r.peak_rss_bytes]
    if not refs:
        return PRIOR_BASE_BYTES + PRIOR_BYTES_PER_PIXEL * px, "prior"
    ref = max(refs, key=lambda r: spec.pixels_in_flight(r.size, r.batch, scale))
    ref_px = spec.pixels_in_flight(ref.size, ref.batch, scale)
    base = ref.base_rss_bytes or 0
    growth = max(0, ref.peak_rss_bytes - base)
    return int(base + growth * px / ref_px), f"scaled from the {ref.size}^2 batch-{ref.batch} row"


def _tail(path: Path, n: int = 400) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1][-n:] if lines else ""


def run_row(row: Row, settings: BenchSettings, limit: int | None) -> Row:
    """Measure ``row`` in a fresh child process, watching memory; fills and returns the row."""
    spec = {
        "model": row.model,
        "size": row.size,
        "batch": row.batch,
        "scale": settings.scale,
        "steps": settings.steps,
        "warmup": settings.warmup,
        "step_budget_s": settings.step_budget_s,
        "device": settings.device,
        "num_classes": settings.num_classes,
    }
    total = _meminfo_total()
    floor = settings.watchdog_floor_bytes
    if floor is None:
        floor = int(0.02 * total) if total else 0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH")) if p)
    start = time.monotonic()
    child_peak = 0
    killed = ""
    with tempfile.TemporaryDirectory(prefix="remixformer-bench-") as tmp:
        out, err = Path(tmp) / "row.json", Path(tmp) / "stderr.txt"
        cmd = [sys.executable, "-m", "remixformer.bench.memory", "--row", json.dumps(spec), "--out", str(out)]
        with open(err, "wb") as err_file:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file, env=env)
            while proc.poll() is None:
                rss = _proc_status("VmRSS", proc.pid) or 0
                child_peak = max(child_peak, rss)
                avail = mem_available()
                if avail is not None and avail < floor:
                    killed = f"killed by the memory watchdog (MemAvailable {avail / GiB:.1f} GiB)"
                elif limit is not None and rss > limit:
                    killed = f"killed by the memory watchdog (RSS {rss / GiB:.1f} GiB > limit)"
                elif settings.row_timeout_s and time.monotonic() - start > settings.row_timeout_s:
                    killed = f"killed: timed out after {settings.row_timeout_s:.0f} s"
                if killed:
                    proc.kill()
                    break
                time.sleep(0.2)
            rc = proc.wait()
        row.wall_s = time.monotonic() - start
        if rc == 0 and not killed and out.exists():
            result = json.loads(out.read_text())
            for k, v in result.items():
                if k in _ROW_FIELDS:
                    setattr(row, k, v)
            return row
        row.status = "failed"
        row.peak_rss_bytes = child_peak or None
        if killed:
            row.note = killed
        elif rc < 0:
            row.note = f"killed (signal {-rc}) at ~{child_peak / GiB:.1f} GiB RSS"
        else:
            row.note = f"exit code {rc}: {_tail(err)}"
        return row


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_benchmark(settings: BenchSettings, on_row: Callable[[Row], None] | None = None) -> dict[str, Any]:
    """All rows, small to large; returns the report (rows, ratios, targets, machine, settings)."""
    settings.check()
    rows: list[Row] = []
    plan = [
        (size, batch, m)
        for size in sorted(set(settings.sizes))
        for batch in sorted(set(settings.batches))
        for m in settings.models
    ]
    for i, (size, batch, m) in enumerate(plan, 1):
        row = Row(m, MODELS[m].label, size, batch)
        predicted, how = predict_peak(m, size, batch, settings.scale, rows)
        row.predicted_peak_bytes = predicted
        available = mem_available()
        limit = settings.memory_limit_bytes
        capacity = limit if available is None else (available if limit is None else min(limit, available))
        needed = int(predicted * 1.1) + settings.margin_bytes
        log.info(
            "row %d/%d: %s %d^2 batch %d (predicted peak %.1f GiB, %s)",
            *(i, len(plan), row.label, size, batch, predicted / GiB, how),
        )
        if capacity is not None and needed > capacity:
            row.status = "skipped"
            row.note = f"would need ~{needed / GiB:.1f} GiB, {capacity / GiB:.1f} GiB available"
            if capacity == limit:
                row.note += " (--memory-limit)"
        else:
            run_row(row, settings, limit)
        log.info("  -> %s", _row_summary(row))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return make_report(rows, settings)


def _row_summary(row: Row) -> str:
    if row.status != "ok":
        return f"{row.status}: {row.note}"
    return (
        f"saved {row.saved_bytes / MiB:.1f} MiB, peak RSS {row.peak_rss_bytes / MiB:.0f} MiB, "
        f"step {row.step_s:.2f} s"
    )


# --------------------------------------------------------------------------------------------------
# Report: ratios, targets, table, JSON
# --------------------------------------------------------------------------------------------------

# The baseline each of our branches is compared with (the paper's Table IX pairs D with ViT-S, C with Swin-T)
BASELINES = {"D": "vit_s16", "C": "swin_t"}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    ours: str
    baseline: str
    metric: str  # a Row field
    threshold: float
    strict: bool  # "<" rather than "<="


TARGETS = (
    Target("d_saved", "Ours-D saves at most 1/25 of what ViT-S/16 saves", "ours_d", "vit_s16",
           "saved_bytes", 1 / 25, strict=False),
    Target("d_time", "Ours-D's step takes at most 1/4 of ViT-S/16's", "ours_d", "vit_s16",
           "step_s", 1 / 4, strict=False),
    Target("c_saved", "Ours-C saves less than Swin-T", "ours_c", "swin_t",
           "saved_bytes", 1.0, strict=True),
)  # fmt: skip


def _find(rows: Sequence[Row], model: str, size: int, batch: int) -> Row | None:
    return next((r for r in rows if r.model == model and r.size == size and r.batch == batch), None)


def _ratio(a: Row | None, b: Row | None, metric: str) -> float | None:
    if a is None or b is None or a.status != "ok" or b.status != "ok":
        return None
    x, y = getattr(a, metric), getattr(b, metric)
    return None if x is None or not y else x / y


def compute_ratios(rows: Sequence[Row]) -> list[dict[str, Any]]:
    out = []
    pairs = [(r.model, BASELINES[MODELS[r.model].arch]) for r in rows if MODELS[r.model].ours]
    pairs = list(dict.fromkeys(pairs))  # in table order, once each
    for size, batch in sorted({(r.size, r.batch) for r in rows}):
        for ours, base in pairs:
            a, b = _find(rows, ours, size, batch), _find(rows, base, size, batch)
            if a is None or b is None:
                continue
            out.append(
                {
                    "size": size,
                    "batch": batch,
                    "ours": ours,
                    "baseline": base,
                    "pair": f"{MODELS[ours].label} / {MODELS[base].label}",
                    "saved": _ratio(a, b, "saved_bytes"),
                    "peak_rss": _ratio(a, b, "peak_rss_bytes"),
                    "step": _ratio(a, b, "step_s"),
                    "step_cpu": _ratio(a, b, "step_cpu_s"),
                    "cuda_max_allocated": _ratio(a, b, "cuda_max_allocated_bytes"),
                }
            )
    return out


def check_targets(rows: Sequence[Row], size: int, batch: int) -> list[dict[str, Any]]:
    """PASS / FAIL per target at ``size``^2 and ``batch``, from rows of one run; n/a when a row is missing."""
    out = []
    for t in TARGETS:
        a, b = _find(rows, t.ours, size, batch), _find(rows, t.baseline, size, batch)
        value = _ratio(a, b, t.metric)
        if value is None:
            missing = [m for m, r in ((t.ours, a), (t.baseline, b)) if r is None or r.status != "ok"]
            status, why = "n/a", f"no measured {size}^2 batch-{batch} row of {', '.join(missing)}"
        else:
            ok = value < t.threshold if t.strict else value <= t.threshold
            status, why = ("PASS" if ok else "FAIL"), ""
        out.append(
            {
                "name": t.name,
                "description": f"{t.description} ({size}^2, batch {batch})",
                "metric": t.metric,
                "value": value,
                "threshold": t.threshold,
                "op": "<" if t.strict else "<=",
                "status": status,
                "note": why,
            }
        )
    return out


def machine_info() -> dict[str, Any]:
    import timm

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": _meminfo_total(),
        "mem_available_bytes_at_start": mem_available(),
        "cuda_available": torch.cuda.is_available(),
    }


def make_report(rows: Sequence[Row], settings: BenchSettings, machine: dict | None = None) -> dict[str, Any]:
    return {
        "benchmark": "memory",
        "format_version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine or machine_info(),
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()},
        "rows": [asdict(r) for r in rows],
        "ratios": compute_ratios(rows),
        "targets": check_targets(rows, settings.target_size, settings.target_batch),
    }


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _mib(x: int | None) -> str:
    return "-" if x is None else f"{x / MiB:,.1f}"


def _fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f} (1/{1 / x:.1f})" if 0 < x < 1 else f"{x:.3f}"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_report(report: dict[str, Any], markdown: bool = False) -> str:
    """The table, the ratios and the targets as text (what the CLI prints), or as Markdown tables."""
    rows = [Row(**r) for r in report["rows"]]
    cuda = any(r.cuda_max_allocated_bytes is not None for r in rows)
    header = ["method", "batch", "input", "saved for backward MiB", "of which params MiB"]
    header += ["peak RSS MiB", "RSS growth MiB", "step s", "step CPU s"]
    header += (["CUDA max alloc MiB", "CUDA max reserved MiB"] if cuda else []) + ["status"]
    table = []
    for r in rows:
        line = [r.label, str(r.batch), f"{r.size}x{r.size}"]
        if r.status == "ok":
            growth = r.peak_rss_bytes - r.base_rss_bytes if r.base_rss_bytes else None
            line += [_mib(r.saved_bytes), _mib(r.saved_state_bytes), _mib(r.peak_rss_bytes)]
            line += [_mib(growth), _secs(r.step_s), _secs(r.step_cpu_s)]
            line += [_mib(r.cuda_max_allocated_bytes), _mib(r.cuda_max_reserved_bytes)] if cuda else []
            line.append("ok")
        else:  # not measured: say why
            line += ["-"] * (len(header) - 4) + [f"{r.status}: {r.note}"]
        table.append(line)
    m = report.get("machine", {})
    device = next((r.device_name for r in rows if r.device_name), None)
    threads = next((r.threads for r in rows if r.threads), None)
    lines = [
        f"Table IX on this machine: {m.get('cpu_count')} CPUs ({threads} torch threads), "
        f"{(m.get('mem_total_bytes') or 0) / GiB:.0f} GiB RAM, torch {m.get('torch')}, timm {m.get('timm')}, "
        f"device {report['settings'].get('device')} ({device}); {report.get('created', '')}",
        "one training step (forward + cross-entropy + backward + SGD); random init; train mode",
        "",
        *_columns(header, table, markdown),
        "",
        "Ratios, ours / baseline, same run:",
        "",
    ]
    ratio_header = ["input", "batch", "pair", "saved", "peak RSS", "step", "step CPU"]
    ratio_header += ["CUDA max alloc"] if cuda else []
    ratio_rows = [
        [f"{r['size']}x{r['size']}", str(r["batch"]), r["pair"], _fmt_ratio(r["saved"])]
        + [_fmt_ratio(r["peak_rss"]), _fmt_ratio(r["step"]), _fmt_ratio(r["step_cpu"])]
        + ([_fmt_ratio(r["cuda_max_allocated"])] if cuda else [])
        for r in report["ratios"]
    ]
    lines += _columns(ratio_header, ratio_rows, markdown) if ratio_rows else ["(no pair measured)"]
    lines += ["", "Targets:", ""]
    for t in report["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        note = f" ({t['note']})" if t["note"] else ""
        bullet = "- " if markdown else "  "
        lines.append(
            f"{bullet}{t['status']}: {t['description']}: {value} {t['op']} {t['threshold']:.4f}{note}"
        )
    return "\n".join(lines)


def _columns(header: list[str], rows: list[list[str]], markdown: bool = False) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        return out + ["| " + " | ".join(row) + " |" for row in rows]
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]
    out = ["  ".join(c.ljust(w) for c, w in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return out


# --------------------------------------------------------------------------------------------------
# The child process
# --------------------------------------------------------------------------------------------------


def _child_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one row of the memory benchmark (run by the parent)")
    parser.add_argument("--row", required=True, help="JSON keyword arguments of measure_row")
    parser.add_argument("--out", required=True, help="where to write the row's JSON result")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = measure_row(**json.loads(args.row))
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main())
