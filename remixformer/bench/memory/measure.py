"""One row, measured in the child process that runs only it (``python -m remixformer.bench.memory``)."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from remixformer.bench.memory.counter import SavedTensorCounter
from remixformer.bench.memory.models import MODELS
from remixformer.bench.memory.probes import _peak_rss, _proc_status

log = logging.getLogger(__name__)


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


def _child_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one row of the memory benchmark (run by the parent)")
    parser.add_argument("--row", required=True, help="JSON keyword arguments of measure_row")
    parser.add_argument("--out", required=True, help="where to write the row's JSON result")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = measure_row(**json.loads(args.row))
    Path(args.out).write_text(json.dumps(result))
    return 0
