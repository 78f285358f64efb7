"""What the timing scripts share (``inference_latency.py``, ``serving_latency.py``, ``gpu_check.py``): the
diagnosis classes and metadata schema of the CDM models they build, the summary of a list of timed calls,
the description of the machine a run measured, and how results JSON is written. Not a script: they
import it as ``benchmarks.common`` once their preamble has put the checkout's root on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from remixformer.schema import AGE_BINS, MetadataSchema, categorical, numeric

CLASSES = ["BCC", "NEV", "MEL", "MISC", "SK"]
SCHEMA = MetadataSchema(
    [
        numeric("age", AGE_BINS),
        categorical("sex", ["female", "male"]),
        categorical("location", ["head_neck", "trunk", "upper_limbs", "lower_limbs", "acral"]),
    ]
)


def percentiles(times: list[float]) -> dict[str, float]:
    """p50, p95, mean and min in milliseconds (rounded to 3 decimals) of ``times`` in seconds, and their
    count."""
    a = np.asarray(times) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "min_ms": round(float(a.min()), 3),
        "n": len(times),
    }


def load_average() -> list[float]:
    """The machine's load average over 1, 5 and 15 minutes, rounded to 2 decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def machine(**extra: Any) -> dict[str, Any]:
    """Platform, Python and torch versions and CPU count, followed by ``extra``."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        **extra,
    }


def write_json(path: str | Path, record: dict[str, Any]) -> Path:
    """Write a script's results (indented JSON, its folder created) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path
