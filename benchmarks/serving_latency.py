"""Latency of one CDM case through the Python API and through the web service, and batch-scoring
throughput, at the paper preset and the small preset (untrained weights: speed does not depend on them).

    python benchmarks/serving_latency.py                       # both presets (~5 min on 2 cores)
    python benchmarks/serving_latency.py --quick               # a smoke run (tiny preset, ~1 min)
    python benchmarks/serving_latency.py --presets small --repeats-small 30 --batch-cases-small 64

One case = a 1200x900 JPEG photo, a 1024x1024 JPEG dermoscopy image and four metadata values, the same
files for every preset. Rows:

- ``api``: ``Predictor.predict(clinical=bytes, dermoscopy=bytes, metadata=...)`` (decoding,
  resizing, the forward pass and the softmax); ``api+explain`` adds the attention maps.
- ``http``: ``POST /predict`` (multipart) to a local uvicorn serving ``create_app(predictor)`` (one
  worker), one request at a time from an httpx client in the same process; ``http+explain`` adds the
  maps and the PNG overlays in the answer.
- ``batch``: ``score_manifest`` over a manifest of N such cases (distinct files), batched; cases per
  second over the whole call (reading the manifest, decoding, inference, writing the CSV).

p50/p95 over ``--repeats-*`` timed calls per path after ``--warmup`` untimed ones; the paths take turns
(api, http, api+explain, http+explain, api, ...) so that a change in the machine's load hits them
alike. Ratios of the same run: HTTP over API (the service's overhead), paper over small, and batch
throughput over one-at-a-time API throughput (1 / p50). Prints a table; writes
benchmarks/results/serving_latency.json (serving_latency-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import CLASSES, load_average, machine, percentiles  # noqa: E402
from benchmarks.common import SCHEMA as COMMON_SCHEMA  # noqa: E402
from remixformer import create_model  # noqa: E402
from remixformer.models.checkpoint import save_model  # noqa: E402
from remixformer.schema import MetadataSchema, boolean  # noqa: E402
from remixformer.serving import Predictor  # noqa: E402
from remixformer.serving.app import create_app  # noqa: E402
from remixformer.serving.batch import score_manifest  # noqa: E402

SCHEMA = MetadataSchema([*COMMON_SCHEMA.fields, boolean("changed")])  # the shared fields and "changed"
METADATA = {"age": "57", "sex": "female", "location": "trunk", "changed": "yes"}
PHOTO_SIZE = (1200, 900)
DERM_SIZE = (1024, 1024)


def smooth_image(size: tuple[int, int], seed: int) -> Image.Image:
    """A photo-like image: smooth colour fields plus a little noise (JPEG-compresses like a photo)."""
    rng = np.random.default_rng(seed)
    w, h = size
    coarse = Image.fromarray(rng.integers(60, 220, (9, 12, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    arr = np.asarray(coarse, dtype=np.int16) + rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def timed_interleaved(paths: dict, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Each path called in turn, ``repeats`` rounds: a change of machine load hits every path alike."""
    for fn in paths.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


class Server:
    """uvicorn serving ``app`` on a free local port, in a thread."""

    def __init__(self, app) -> None:
        import socket

        import uvicorn

        # With the protocol named, asyncio sets TCP_NODELAY on the connections, as on the sockets uvicorn
        # opens itself; without it Nagle's algorithm and delayed ACKs add ~40 ms to every answer.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        self.sock.close()


def bench_preset(preset: str, repeats: int, warmup: int, batch_cases: int, batch_size: int, explain: bool,
                 work: Path) -> dict:  # fmt: skip
    import httpx

    t0 = time.perf_counter()
    model = create_model(preset, "CDM", tasks={"diag": CLASSES}, metadata_schema=SCHEMA.to_dict())
    ckpt = save_model(model, work / f"{preset}.safetensors")
    del model
    predictor = Predictor.from_checkpoint(ckpt)
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in predictor.model.parameters())
    photo, derm = jpeg(smooth_image(PHOTO_SIZE, 1)), jpeg(smooth_image(DERM_SIZE, 2))
    rows: dict[str, dict] = {}
    app = create_app(predictor, workers=1, queue_size=4)
    files = {"clinical": ("photo.jpg", photo, "image/jpeg"), "dermoscopy": ("derm.jpg", derm, "image/jpeg")}
    with Server(app) as url, httpx.Client(base_url=url, timeout=600) as client:

        def api(explain_maps: bool = False):
            return predictor.predict(clinical=photo, dermoscopy=derm, metadata=METADATA, explain=explain_maps)

        def http(explain_maps: bool = False):
            r = client.post(
                "/predict", files=files, data={**METADATA, "explain": "true" if explain_maps else "false"}
            )
            if r.status_code != 200:
                raise RuntimeError(f"POST /predict answered {r.status_code}: {r.text}")
            return r

        paths = {"api": api, "http": http}
        if explain:
            paths.update({"api+explain": lambda: api(True), "http+explain": lambda: http(True)})
        print(f"[{preset}] {', '.join(paths)}: {warmup} + {repeats} calls each, interleaved ...", flush=True)
        times = timed_interleaved(paths, repeats, warmup)
        rows.update({name: percentiles(t) for name, t in times.items()})
        answer_kib = len(http(True).content) / 1024 if explain else None

    print(f"[{preset}] batch of {batch_cases} ...", flush=True)
    data = work / f"cases_{preset}"
    data.mkdir(exist_ok=True)
    lines = ["case_id,clinical,dermoscopy,age,sex,location,changed"]
    for i in range(batch_cases):
        (data / f"c{i}.jpg").write_bytes(jpeg(smooth_image(PHOTO_SIZE, 100 + i)))
        (data / f"d{i}.jpg").write_bytes(jpeg(smooth_image(DERM_SIZE, 200 + i)))
        lines.append(f"case{i},c{i}.jpg,d{i}.jpg,57,female,trunk,yes")
    (data / "manifest.csv").write_text("\n".join(lines) + "\n")
    result = score_manifest(
        predictor, data / "manifest.csv", work / f"preds_{preset}.csv", batch_size=batch_size, progress=False
    )
    if result.errors:
        raise RuntimeError(f"batch scoring failed on {len(result.errors)} row(s): {result.errors[0]}")
    rows["batch"] = {
        "cases": result.n_scored,
        "batch_size": batch_size,
        "seconds": result.seconds,
        "cases_per_s": result.cases_per_second,
    }
    return {
        "preset": preset,
        "parameters_M": round(n_params / 1e6, 2),
        "input_sizes": predictor.input_sizes,
        "load_s": round(load_s, 2),
        "rows": rows,
        "http_answer_with_overlays_kib": None if answer_kib is None else round(answer_kib, 1),
    }


def ratios(results: dict[str, dict]) -> dict[str, float]:
    out = {}
    for name, r in results.items():
        rows = r["rows"]
        out[f"{name}: http/api p50"] = rows["http"]["p50_ms"] / rows["api"]["p50_ms"]
        one_at_a_time = 1000.0 / rows["api"]["p50_ms"]
        out[f"{name}: batch/api throughput"] = rows["batch"]["cases_per_s"] / one_at_a_time
        if "api+explain" in rows:
            out[f"{name}: api+explain/api p50"] = rows["api+explain"]["p50_ms"] / rows["api"]["p50_ms"]
    names = list(results)
    if "paper" in results and "small" in results:
        p, s = results["paper"]["rows"], results["small"]["rows"]
        out["paper/small api p50"] = p["api"]["p50_ms"] / s["api"]["p50_ms"]
        out["paper/small http p50"] = p["http"]["p50_ms"] / s["http"]["p50_ms"]
        out["small/paper batch throughput"] = s["batch"]["cases_per_s"] / p["batch"]["cases_per_s"]
    elif len(names) == 2:
        a, b = names
        out[f"{a}/{b} api p50"] = results[a]["rows"]["api"]["p50_ms"] / results[b]["rows"]["api"]["p50_ms"]
    return {k: round(v, 3) for k, v in out.items()}


def print_table(results: dict[str, dict], rat: dict[str, float]) -> None:
    print()
    print(f"{'preset':<8} {'path':<14} {'p50 ms':>10} {'p95 ms':>10} {'n':>4}   {'batch cases/s':>13}")
    for name, r in results.items():
        for row, v in r["rows"].items():
            if row == "batch":
                print(
                    f"{name:<8} {'batch':<14} {'':>10} {'':>10} {v['cases']:>4}   {v['cases_per_s']:>13.3f}"
                )
            else:
                print(f"{name:<8} {row:<14} {v['p50_ms']:>10.1f} {v['p95_ms']:>10.1f} {v['n']:>4}")
    print()
    for k, v in rat.items():
        print(f"  {k:<32} {v:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["paper", "small"], choices=["paper", "small", "tiny"])
    p.add_argument("--repeats-paper", type=int, default=8)
    p.add_argument("--repeats-small", type=int, default=20)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--batch-cases-paper", type=int, default=4)
    p.add_argument("--batch-cases-small", type=int, default=32)
    p.add_argument("--batch-size-paper", type=int, default=2)
    p.add_argument("--batch-size-small", type=int, default=8)
    p.add_argument("--no-explain", action="store_true", help="skip the +explain rows")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared, oversubscribed machine more threads spin and wait)",
    )
    p.add_argument("--quick", action="store_true", help="tiny preset, few repeats: a smoke run")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    threads = args.threads
    torch.set_num_threads(threads)
    load_before = load_average()
    plan = (
        [("tiny", 5, 8, 4)]
        if args.quick
        else [
            (
                name,
                getattr(args, f"repeats_{name}", 10),
                getattr(args, f"batch_cases_{name}", 8),
                getattr(args, f"batch_size_{name}", 4),
            )
            for name in args.presets
        ]
    )
    results: dict[str, dict] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="serving_latency_") as tmp:
        for name, repeats, cases, bs in plan:
            results[name] = bench_preset(
                f"remixformer_{name}", repeats, args.warmup, cases, bs, not args.no_explain, Path(tmp)
            )
    rat = ratios(results)
    print_table(results, rat)
    report = {
        "benchmark": "serving_latency",
        "machine": machine(
            torch_threads=threads,
            device="cpu",
            load_average_1_5_15_min_before=load_before,
            load_average_1_5_15_min_after=load_average(),
        ),
        "case": {"photo": list(PHOTO_SIZE), "dermoscopy": list(DERM_SIZE), "metadata": METADATA},
        "settings": {"warmup": args.warmup, "quick": args.quick},
        "presets": results,
        "ratios": rat,
        "total_s": round(time.perf_counter() - start, 1),
    }
    out = args.out or ROOT / "benchmarks" / "results" / (
        "serving_latency-quick.json" if args.quick else "serving_latency.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
