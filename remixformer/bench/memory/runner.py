"""The table: rows in child processes, the memory check, the watchdog."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from remixformer.bench.memory.models import MODELS
from remixformer.bench.memory.probes import GiB, MiB, _meminfo_total, _proc_status, mem_available
from remixformer.bench.memory.report import make_report
from remixformer.bench.memory.rows import _ROW_FIELDS, BenchSettings, Row

log = logging.getLogger(__name__)

# The directory holding the ``remixformer`` package; put first on the child's path so that the child
# imports the same code as the parent.
_PACKAGE_ROOT = Path(__file__).resolve().parents[3]


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
