"""``remixformer bench memory``: memory and speed of a training step, the paper's Table IX on this machine.

``benchmarks/memory.py`` runs the same code through :func:`memory_main`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

QUICK_SIZES = (64, 128)
QUICK_BATCHES = (1,)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="benchmarks: memory and speed of a training step (Table IX)",
        description="Benchmarks that print a table and can write JSON.",
    )
    sub = p.add_subparsers(dest="bench_command", metavar="BENCH")
    m = sub.add_parser(
        "memory",
        help="bytes saved for backward, peak memory and step time of Ours-C/D, ViT-S/16, Swin-T",
        description=MEMORY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_memory_arguments(m)
    m.set_defaults(func=run_memory)
    p.set_defaults(func=lambda args: _help(p))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


MEMORY_DESCRIPTION = """\
Reproduce the paper's Table IX on this machine: one training step (forward, cross-entropy, backward,
SGD) of Ours-C, Ours-D, timm ViT-S/16 and timm Swin-T, random-initialised, for each image size and batch
size. Each row runs in a fresh child process and reports the bytes saved for backward (exact, via
torch.autograd.graph.saved_tensors_hooks), the peak RSS of the child, the median step time and, on a
GPU, torch.cuda.max_memory_allocated. A row predicted not to fit in the available memory is skipped
and marked; a child that dies is marked failed and the run goes on. Then the ratios against the
baselines of the same run and PASS/FAIL per target (at --target-size, batch 1).

The full CPU run (512 and 2048, batch 1 and 2) takes 20-25 minutes on 2 idle cores; --quick runs tiny
versions of the same models at 64 and 128, batch 1, in about a minute (a CI smoke run)."""


def add_memory_arguments(p: argparse.ArgumentParser, default_out: str | Path | None = None) -> None:
    from remixformer.bench import memory as _m  # light: torch is imported by the module, not used here

    p.add_argument("--sizes", type=int, nargs="+", metavar="S", help="image sizes S (default: 512 2048)")
    p.add_argument("--batches", type=int, nargs="+", metavar="B", help="batch sizes (default: 1 2)")
    p.add_argument(
        "--models",
        nargs="+",
        choices=sorted(_m.MODELS),
        metavar="NAME",
        help=f"models, in table order (default: {' '.join(_m.DEFAULT_MODELS)}; also: "
        f"{' '.join(sorted(set(_m.MODELS) - set(_m.DEFAULT_MODELS)))})",
    )
    p.add_argument("--steps", type=int, help="timed steps per row, at most (default: 3; --quick: 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first, >= 1 (default: 1)")
    p.add_argument(
        "--step-budget",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="stop timing a row once its timed steps took this long, after at least one (default: 60)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where the steps run (default: cuda when available, else cpu)",
    )
    p.add_argument(
        "--memory-limit",
        type=float,
        metavar="GIB",
        help="memory a row may use (default: MemAvailable when the row starts); rows predicted above it "
        "are skipped and a child above it is killed",
    )
    p.add_argument("--margin", type=float, default=1.0, metavar="GIB", help="kept free (default: 1)")
    p.add_argument("--row-timeout", type=float, metavar="SECONDS", help="kill a row that runs longer")
    p.add_argument("--num-classes", type=int, default=12, help="classes of the heads (default: 12)")
    p.add_argument("--target-size", type=int, default=2048, help="image size of the targets (default: 2048)")
    p.add_argument("--quick", action="store_true", help="tiny models at 64 and 128, batch 1: a CI smoke run")
    p.add_argument(
        "--out",
        type=Path,
        default=default_out,
        metavar="FILE.json",
        help="write the report as JSON" + (f" (default: {default_out})" if default_out else ""),
    )
    p.add_argument("--check", action="store_true", help="exit with 1 when a target is not met")


def settings_from_args(args: argparse.Namespace):
    import torch

    from remixformer.bench.memory import BenchSettings, GiB

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if args.warmup < 1:
        raise ValueError(
            f"--warmup must be at least 1 (the first step counts the saved bytes), got {args.warmup}"
        )
    settings = BenchSettings(
        scale="tiny" if args.quick else "paper",
        steps=args.steps or (2 if args.quick else 3),
        warmup=args.warmup,
        step_budget_s=args.step_budget,
        device=device,
        num_classes=args.num_classes,
        margin_bytes=int(args.margin * GiB),
        memory_limit_bytes=None if args.memory_limit is None else int(args.memory_limit * GiB),
        row_timeout_s=args.row_timeout,
        target_size=args.target_size,
    )
    settings.sizes = tuple(args.sizes or (QUICK_SIZES if args.quick else settings.sizes))
    settings.batches = tuple(args.batches or (QUICK_BATCHES if args.quick else settings.batches))
    if args.models:
        settings.models = tuple(args.models)
    return settings


def run_memory(args: argparse.Namespace) -> int:
    from remixformer.bench.memory import format_report, run_benchmark, write_json

    settings = settings_from_args(args)
    report = run_benchmark(settings)
    print(format_report(report))
    if args.out:
        path = write_json(report, args.out)
        print(f"\nwrote {path}")
    failed = [t for t in report["targets"] if t["status"] == "FAIL"]
    return 1 if args.check and failed else 0


def memory_main(argv: Sequence[str] | None = None, default_out: str | Path | None = None) -> int:
    """Entry point of ``benchmarks/memory.py``: the same options as ``remixformer bench memory``."""
    from remixformer.cli.main import setup_logging

    parser = argparse.ArgumentParser(
        prog="benchmarks/memory.py",
        description=MEMORY_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_memory_arguments(parser, default_out)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress log")
    args = parser.parse_args(argv)
    if default_out is not None and args.quick and args.out == default_out:
        args.out = Path(default_out).with_name(Path(default_out).stem + "-quick.json")
    setup_logging(0, args.quiet)
    try:
        return run_memory(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
