"""Inference speed of the model alone, eager PyTorch against onnxruntime (and, with ``--compile``,
torch.compile), on 1 and 2 threads, in one run (untrained weights: speed does not depend on them).

    python benchmarks/inference_latency.py                   # small and paper presets (export: minutes)
    python benchmarks/inference_latency.py --quick           # a smoke run (tiny preset, ~1-2 min)
    python benchmarks/inference_latency.py --presets small --threads 1 2 4 --repeats 30 --compile

Inputs are preprocessed tensors (random, every modality present) at the preset's sizes: image
decoding and resizing are left out (benchmarks/serving_latency.py measures the whole request). Rows,
per preset, backend and thread count:

- ``p50/p95 ms``: one CDM case (batch of 1), ``--repeats`` timed calls after ``--warmup`` untimed ones;
- ``cases/s``: a batch of ``--batch`` cases, ``--batch-repeats`` timed calls, batch / median time.

Backends: ``eager`` (``model(batch)`` under ``torch.no_grad``, torch threads set), ``onnxruntime``
(the graph of ``remixformer export --format onnx``, one session per thread count, intra-op threads
set), ``onnxruntime-int8`` (the same graph with int8 weights, ``export --quantize int8``; ``--no-int8``
leaves it out), ``compile`` (``torch.compile`` of the same inference graph; opt-in: the first call compiles).
Backends and thread counts take turns call by call, so that a change of the machine's load hits
them alike. Timings are only meaningful on a quiet machine (docs/benchmarks.md). Prints a table;
writes benchmarks/results/inference_latency.json (inference_latency-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import CLASSES, SCHEMA, load_average, machine, percentiles  # noqa: E402
from remixformer import create_model  # noqa: E402
from remixformer.models.graph import InferenceGraph  # noqa: E402
from remixformer.serving.onnx_export import (  # noqa: E402
    OnnxModel,
    export_onnx,
    parity_check,
    quantize_onnx,
    random_inputs,
)


def interleaved(calls: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Each call in turn, ``repeats`` rounds, after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def make_calls(
    model,
    sessions: dict[int, OnnxModel],
    int8: dict[int, OnnxModel],
    compiled,
    inputs: dict,
    threads: list[int],
) -> dict:
    """name -> call running one batch; ``eager@2`` sets torch's threads to 2 before its forward."""
    feeds = {n: s.feed(inputs) for n, s in sessions.items()}
    graph_args = tuple(inputs[name] for name in InferenceGraph(model).input_names)
    calls: dict[str, Callable[[], object]] = {}
    for n in threads:

        def eager(n: int = n) -> object:
            torch.set_num_threads(n)
            with torch.no_grad():
                return model(inputs)

        calls[f"eager@{n}"] = eager
        calls[f"onnxruntime@{n}"] = lambda n=n: sessions[n].run(feeds[n])
        if n in int8:
            calls[f"onnxruntime-int8@{n}"] = lambda n=n: int8[n].run(feeds[n])
        if compiled is not None:

            def comp(n: int = n) -> object:
                torch.set_num_threads(n)
                with torch.no_grad():
                    return compiled(*graph_args)

            calls[f"compile@{n}"] = comp
    return calls


def bench_preset(preset: str, args: argparse.Namespace, work: Path) -> dict:
    torch.manual_seed(0)
    model = create_model(preset, "CDM", tasks={"diag": CLASSES}, metadata_schema=SCHEMA.to_dict()).eval()
    print(f"[{preset}] exporting to ONNX ...", flush=True)
    t0 = time.perf_counter()
    path = export_onnx(model, work / f"{preset}.onnx")
    export_s = time.perf_counter() - t0
    sessions = {n: OnnxModel(path, threads=n) for n in args.threads}
    parity = max(parity_check(model, sessions[args.threads[0]]).values())
    int8: dict[int, OnnxModel] = {}
    quantize_s = int8_parity = int8_mib = None
    if args.int8:
        t0 = time.perf_counter()
        q = quantize_onnx(path, work / f"{preset}.int8.onnx")
        quantize_s = round(time.perf_counter() - t0, 1)
        int8 = {n: OnnxModel(q, threads=n) for n in args.threads}
        int8_parity = max(parity_check(model, int8[args.threads[0]]).values())
        int8_mib = round(q.stat().st_size / 2**20, 1)
    compiled = None
    compile_s = None
    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(InferenceGraph(model))
        with torch.no_grad():
            one = random_inputs(model.config, 1)
            compiled(*(one[name] for name in InferenceGraph(model).input_names))
        compile_s = round(time.perf_counter() - t0, 1)
    rows: dict[str, dict] = {}
    one = random_inputs(model.config, 1, seed=1)
    calls = make_calls(model, sessions, int8, compiled, one, args.threads)
    print(
        f"[{preset}] one case: {', '.join(calls)}; {args.warmup} + {args.repeats} calls each ...", flush=True
    )
    for name, t in interleaved(calls, args.repeats, args.warmup).items():
        rows[name] = {"one_case": percentiles(t)}
    many = random_inputs(model.config, args.batch, seed=2)
    calls = make_calls(model, sessions, int8, compiled, many, args.threads)
    print(f"[{preset}] batch of {args.batch}: {args.batch_repeats} calls each ...", flush=True)
    for name, t in interleaved(calls, args.batch_repeats, 1).items():
        rows[name]["batch"] = {
            "cases": args.batch,
            "median_s": round(float(np.median(t)), 4),
            "cases_per_s": round(args.batch / float(np.median(t)), 3),
        }
    return {
        "preset": preset,
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "input_sizes": {
            "clinical": model.config.clinical.image_size,
            "dermoscopy": model.config.dermoscopy.image_size,
        },
        "export_s": round(export_s, 1),
        "onnx_mib": round(path.stat().st_size / 2**20, 1),
        "parity_max_abs_diff": parity,
        "int8": {"quantize_s": quantize_s, "onnx_mib": int8_mib, "parity_max_abs_diff": int8_parity},
        "compile_s": compile_s,
        "rows": rows,
    }


def speedups(results: dict[str, dict]) -> dict[str, float]:
    """Per preset and thread count: eager p50 / other p50 and other cases/s / eager cases/s."""
    out: dict[str, float] = {}
    for name, r in results.items():
        rows = r["rows"]
        for key, row in rows.items():
            backend, n = key.split("@")
            if backend == "eager":
                continue
            base = rows[f"eager@{n}"]
            out[f"{name} {backend}@{n}: eager/{backend} p50"] = round(
                base["one_case"]["p50_ms"] / row["one_case"]["p50_ms"], 3
            )
            out[f"{name} {backend}@{n}: {backend}/eager cases/s"] = round(
                row["batch"]["cases_per_s"] / base["batch"]["cases_per_s"], 3
            )
    return out


def print_table(results: dict[str, dict], ratios: dict[str, float]) -> None:
    print()
    print(f"{'preset':<22} {'backend':<17} {'threads':>7} {'p50 ms':>10} {'p95 ms':>10} {'cases/s':>10}")
    for name, r in results.items():
        for key, row in r["rows"].items():
            backend, n = key.split("@")
            one, batch = row["one_case"], row["batch"]
            print(
                f"{name:<22} {backend:<17} {n:>7} {one['p50_ms']:>10.1f} {one['p95_ms']:>10.1f} "
                f"{batch['cases_per_s']:>10.2f}"
            )
    print()
    for k, v in ratios.items():
        print(f"  {k:<52} {v:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small", "paper"], choices=["paper", "small", "tiny"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts (default 1 2)")
    p.add_argument("--repeats", type=int, default=20, help="timed one-case calls per row (default 20)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="cases in the throughput batch (default 8)")
    p.add_argument("--batch-repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="also time torch.compile (compiles first)")
    p.add_argument(
        "--no-int8",
        dest="int8",
        action="store_false",
        help="leave out the int8 graph (remixformer export --quantize int8)",
    )
    p.add_argument("--quick", action="store_true", help="tiny preset, few repeats: a smoke run")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.presets, args.repeats, args.warmup, args.batch, args.batch_repeats = ["tiny"], 3, 1, 4, 2
    if any(n < 1 for n in args.threads):
        raise SystemExit(f"--threads: expected positive counts, got {args.threads}")

    threads_before = torch.get_num_threads()
    load_before = load_average()
    start = time.perf_counter()
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="inference_latency_") as tmp:
            for name in args.presets:
                results[f"remixformer_{name}"] = bench_preset(f"remixformer_{name}", args, Path(tmp))
    finally:
        torch.set_num_threads(threads_before)
    ratios = speedups(results)
    print_table(results, ratios)
    report = {
        "benchmark": "inference_latency",
        "machine": machine(
            onnxruntime=__import__("onnxruntime").__version__,
            load_average_1_5_15_min_before=load_before,
            load_average_1_5_15_min_after=load_average(),
        ),
        "settings": {
            "threads": args.threads,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "batch": args.batch,
            "batch_repeats": args.batch_repeats,
            "compile": args.compile,
            "int8": args.int8,
            "quick": args.quick,
        },
        "presets": results,
        "speedups": ratios,
        "total_s": round(time.perf_counter() - start, 1),
    }
    out = args.out or ROOT / "benchmarks" / "results" / (
        "inference_latency-quick.json" if args.quick else "inference_latency.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
