"""Report: ratios against the baselines, targets, the table, JSON."""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from remixformer.bench.memory.models import MODELS
from remixformer.bench.memory.probes import GiB, MiB, machine_info
from remixformer.bench.memory.rows import BenchSettings, Row

log = logging.getLogger(__name__)


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
