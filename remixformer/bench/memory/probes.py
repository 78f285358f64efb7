"""What the operating system says: /proc status and meminfo fields, the peak RSS, the machine."""

from __future__ import annotations

import logging
import os
import platform
import sys
from typing import Any

import torch

log = logging.getLogger(__name__)

MiB = 2**20
GiB = 2**30


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


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


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
