"""Speed of one DINO pretraining step (windows per second) at the paper's sizes and the small preset's.

    python benchmarks/pretrain_speed.py                   # both settings, a few steps each
    python benchmarks/pretrain_speed.py --quick           # a smoke run (1 step each, small batches)
    python benchmarks/pretrain_speed.py --paper-batch 8 --small-batch 64 --steps 5 --threads 1,2

One step is what ``remixformer pretrain`` does per batch: teacher forward on the 2 global views, student
forward on the global and local views, DINO loss with the centre update, backward, DINO's per-tensor
gradient clipping, AdamW with weight decay, EMA update of the teacher. Inputs are random views of the
configured sizes (the data pipeline is measured apart: multi-crop of one decoded window in one
process with one thread, as in a DataLoader worker).

- paper: ``configs/pretrain/dino_paper.yaml``: ViT-S/16, 2 x 256^2 + 8 x 96^2 views, head K = 65536
- small: ``configs/pretrain/dino_small_cpu.yaml``: remixformer_small's ViT (width 64, depth 3, patch 8),
  2 x 64^2 + 4 x 24^2 views, head K = 4096

Each thread count (default: 1 and all cores) gets a table and the ratio small/paper in the same run;
writes benchmarks/results/pretrain_speed.json (pretrain_speed-quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from remixformer.config import resolve  # noqa: E402
from remixformer.pretrain.augment import MultiCrop  # noqa: E402
from remixformer.pretrain.config import PretrainConfig, resolve_sizes  # noqa: E402
from remixformer.pretrain.meta_arch import DINOMetaArch  # noqa: E402

CONFIGS = {
    "paper": ROOT / "configs" / "pretrain" / "dino_paper.yaml",
    "small": ROOT / "configs" / "pretrain" / "dino_small_cpu.yaml",
}


def config(name: str) -> PretrainConfig:
    cfg = resolve(PretrainConfig, [CONFIGS[name]], ["backbone.pretrained=null"])
    return resolve_sizes(cfg)


def measure_step(cfg: PretrainConfig, batch: int, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    meta = DINOMetaArch(cfg).train()
    opt = torch.optim.AdamW(meta.param_groups(), lr=1e-4)
    for g in opt.param_groups:
        if g.get("apply_wd"):
            g["weight_decay"] = cfg.optim.weight_decay
    G, L, n_local = cfg.crops.global_size, cfg.crops.local_size, cfg.crops.n_local
    global_views = torch.randn(2 * batch, 3, G, G)
    local_views = torch.randn(n_local * batch, 3, L, L)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        out = meta(global_views, local_views, teacher_temp=cfg.dino.warmup_teacher_temp)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        meta.clip_gradients(cfg.optim.clip_grad)
        opt.step()
        meta.update_teacher(cfg.dino.momentum_teacher)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        if not torch.isfinite(out["loss"]):
            raise RuntimeError("non-finite loss in the benchmark step")
    step = statistics.median(times)
    n_student = sum(p.numel() for p in meta.student.parameters())
    return {
        "batch_windows": batch,
        "views_per_window": 2 + n_local,
        "global_size": G,
        "local_size": L,
        "head_out_dim": cfg.head.out_dim,
        "student_parameters_m": round(n_student / 1e6, 2),
        "step_s": round(step, 4),
        "step_s_all": [round(t, 4) for t in times],
        "windows_per_s": round(batch / step, 3),
        "views_per_s": round(batch * (2 + n_local) / step, 2),
    }


def measure_augment(cfg: PretrainConfig, n: int) -> float:
    """Windows per second of the multi-crop augmentation in one process with one torch thread (as in a
    DataLoader worker), from decoded PIL windows (image decoding not included)."""
    w = cfg.windows.window_size
    rng = np.random.default_rng(0)
    window = Image.fromarray(rng.integers(0, 255, (w, w, 3), dtype=np.uint8))
    crop = MultiCrop(cfg.crops)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        crop(window, seed=0)  # warm-up
        t0 = time.perf_counter()
        for i in range(n):
            crop(window, seed=i)
        return n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)


def run_setting(name: str, batch: int, args: argparse.Namespace) -> dict:
    cfg = config(name)
    print(f"{name}: {batch} windows per step, {torch.get_num_threads()} thread(s) ...", flush=True)
    row = measure_step(cfg, batch, args.steps, args.warmup)
    row["augment_windows_per_s_1proc"] = round(measure_augment(cfg, args.augment_windows), 2)
    row["config"] = str(CONFIGS[name].relative_to(ROOT))
    return row


def print_table(threads: int, rows: dict, ratio: float) -> None:
    header = (
        f"{'setting':<8}{'threads':>8}{'views/window':>14}{'batch':>7}{'step s':>9}{'windows/s':>11}"
        f"{'views/s':>10}{'augment win/s':>15}"
    )
    print()
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        views = f"2x{r['global_size']}+{r['views_per_window'] - 2}x{r['local_size']}"
        print(
            f"{name:<8}{threads:>8}{views:>14}{r['batch_windows']:>7}{r['step_s']:>9.3f}"
            f"{r['windows_per_s']:>11.2f}{r['views_per_s']:>10.1f}{r['augment_windows_per_s_1proc']:>15.1f}"
        )
    print(f"small / paper windows per second ({threads} thread(s)): {ratio:.1f}x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--paper-batch", type=int, default=4, help="windows per step at the paper's sizes")
    p.add_argument("--small-batch", type=int, default=64, help="windows per step at the small preset's sizes")
    p.add_argument("--steps", type=int, default=3, help="measured steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    p.add_argument("--augment-windows", type=int, default=20, help="windows for the augmentation figure")
    p.add_argument(
        "--threads", default=f"1,{os.cpu_count()}", help="comma-separated torch thread counts to measure"
    )
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 step, batches 1 and 8, 1 thread")
    p.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/...)")
    args = p.parse_args(argv)
    if args.quick:
        args.paper_batch, args.small_batch, args.steps, args.warmup, args.augment_windows = 1, 8, 1, 0, 4
        args.threads = "1"
    thread_counts = [int(t) for t in str(args.threads).split(",") if t.strip()]
    out = args.out or ROOT / "benchmarks" / "results" / f"pretrain_speed{'-quick' if args.quick else ''}.json"

    runs = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        rows = {
            "paper": run_setting("paper", args.paper_batch, args),
            "small": run_setting("small", args.small_batch, args),
        }
        ratio = rows["small"]["windows_per_s"] / rows["paper"]["windows_per_s"]
        print_table(threads, rows, ratio)
        runs.append(
            {
                "torch_threads": threads,
                "load_average_1min_before": load_before,
                "results": rows,
                "ratio_small_over_paper_windows_per_s": round(ratio, 2),
            }
        )

    result = {
        "benchmark": "DINO pretraining step (teacher + student forward, loss, backward, clip, AdamW, EMA)",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": "cpu",
            "note": "shared machine: others' load (load_average_1min_before) slows multi-thread runs",
        },
        "quick": args.quick,
        "steps": args.steps,
        "warmup": args.warmup,
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
