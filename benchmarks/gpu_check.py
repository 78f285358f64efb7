"""A first look at the paper preset on one GPU, in one command of at most ~8 minutes.

    python benchmarks/gpu_check.py             # one GPU; writes benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --batches 8 16 64 --budget-s 900 --out FILE.json
    python benchmarks/gpu_check.py --dry-run   # the same code paths on the CPU, tiny preset (<1 min)

Rows (each in its own ``try``: an out-of-memory or any other error is recorded as ``"error"`` in the
JSON and the run goes on; ``torch.cuda.empty_cache()`` after every row):

- ``sdpa``: which ``scaled_dot_product_attention`` kernels accept CLS-WMSA's call (4-D tensors of the
  global encoder's first stage, an additive bias that needs a gradient), forward and backward, per dtype;
- ``train/b<B>/<precision>/ckpt_<on|off>``: a training step of ``remixformer_paper`` (CDM, every modality
  present, the project's task loss, SGD with momentum) per batch, precision (``fp32``; ``16-mixed``:
  ``torch.autocast`` float16 and a ``GradScaler``; ``bf16-mixed``) and clinical gradient checkpointing:
  peak GiB (``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``), the median step time
  (``torch.cuda.synchronize`` around each step), cases/s, and the host-device synchronisations of one
  step (``torch.cuda.set_sync_debug_mode("warn")``, its warnings counted, with the lines that caused them);
- ``timm_parts/b<B>/<precision>``: the same step for stock timm parts doing the encoders' work: Swin-T on
  the global views and the crops, ViT-S/16 on the dermoscopy windows (random init); ``ratios`` gives the
  CDM step over this one;
- ``infer/b<B>/<fp32|bf16>``: batched inference (eval, ``inference_mode``): median ms per batch, cases/s;
- ``loader``: cases/s of a DataLoader decoding large synthetic JPEGs (3000x2000) and transforming them with
  ``build_image_transform`` (training policy) at the preset's sizes, ``num_workers = min(8, cpu count)``;
- ``ddp``: two processes (NCCL), DistributedDataParallel with ``find_unused_parameters``, a few steps,
  weights compared across ranks; skipped unless 2+ GPUs.

``--budget-s`` (default 480) bounds the whole run: rows not started by then are marked ``skipped``, and a
row's timed steps stop early once it is spent. ``--dry-run`` runs every row on the CPU with
``remixformer_tiny`` at its tiny sizes, a couple of steps each and two small JPEGs; peak memory and
synchronisation counts are then null (no CUDA call is made) and the DDP row is skipped (``--ddp-on-cpu``
runs it on two CPU processes with gloo, to test it).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import CLASSES, SCHEMA, machine  # noqa: E402
from remixformer import create_model, keys  # noqa: E402
from remixformer.data.images import load_image  # noqa: E402
from remixformer.data.transforms import build_image_transform  # noqa: E402
from remixformer.layers.imaging import normalize_images  # noqa: E402
from remixformer.models.remixformer import BRANCH_KEYS  # noqa: E402
from remixformer.training.module import task_losses  # noqa: E402

PRECISIONS = ("fp32", "16-mixed", "bf16-mixed")
INFER_PRECISIONS = ("fp32", "bf16")
SDPA_BACKENDS = ("MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
SDPA_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SYNC_MESSAGE = "synchronizing CUDA operation"  # what set_sync_debug_mode("warn") warns

# the timm models of the reference step, shrunk for the dry run (same families, the tiny preset's sizes)
TINY_TIMM = {
    "swin": {"patch_size": 2, "embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2),
             "window_size": 2},
    "vit": {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
}  # fmt: skip


@dataclass
class Settings:
    preset: str
    device: str
    batches: list[int]
    infer_batches: list[int]
    steps: int
    warmup: int
    infer_repeats: int
    budget_s: float
    loader_files: int
    loader_px: tuple[int, int]  # width, height of each synthetic JPEG
    loader_cases: int
    loader_batch: int
    ddp_steps: int
    ddp_batch: int
    dry_run: bool
    ddp_on_cpu: bool = False
    timm_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"


def settings_for(args: argparse.Namespace) -> Settings:
    if args.dry_run:
        return Settings(
            preset="remixformer_tiny",
            device="cpu",
            batches=args.batches or [2],
            infer_batches=args.infer_batches or [1, 2],
            steps=args.steps or 2,
            warmup=1 if args.warmup is None else args.warmup,
            infer_repeats=2,
            budget_s=args.budget_s,
            loader_files=2,
            loader_px=(300, 200),
            loader_cases=8,
            loader_batch=4,
            ddp_steps=2,
            ddp_batch=2,
            dry_run=True,
            ddp_on_cpu=args.ddp_on_cpu,
            timm_kwargs=TINY_TIMM,
        )
    return Settings(
        preset="remixformer_paper",
        device="cuda",
        batches=args.batches or [8, 64],
        infer_batches=args.infer_batches or [1, 16],
        steps=args.steps or 3,
        warmup=1 if args.warmup is None else args.warmup,
        infer_repeats=10,
        budget_s=args.budget_s,
        loader_files=8,
        loader_px=(3000, 2000),
        loader_cases=192,
        loader_batch=16,
        ddp_steps=3,
        ddp_batch=2,
        dry_run=False,
    )


# --------------------------------------------------------------------------------------------------
# Rows: the budget, errors, clean-up
# --------------------------------------------------------------------------------------------------


class Skip(Exception):
    """Raised by a row that does not apply here (its message is the reason)."""


class Runner:
    """Runs rows in order within the time budget; each row's outcome goes into ``rows``."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.start = time.perf_counter()
        self.deadline = self.start + s.budget_s
        self.rows: dict[str, dict[str, Any]] = {}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self, key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if self.left() <= 0:
            row: dict[str, Any] = {
                "status": "skipped",
                "reason": f"time budget of {self.s.budget_s:g} s spent",
            }
        else:
            t0 = time.perf_counter()
            try:
                row = {"status": "ok", **fn()}
            except Skip as e:
                row = {"status": "skipped", "reason": str(e)}
            except Exception as e:  # an out-of-memory error among them: recorded, the run goes on
                row = {"status": "error", "error": f"{type(e).__name__}: {e}"[:2000]}
            row["seconds"] = round(time.perf_counter() - t0, 2)
            release(self.s)
        self.rows[key] = row
        what = row.get("error") or row.get("reason") or ""
        print(
            f"[{time.perf_counter() - self.start:6.1f} s] {key:<34} {row['status']:<7} {what[:100]}",
            flush=True,
        )
        return row


def release(s: Settings) -> None:
    gc.collect()
    if s.cuda:
        torch.cuda.empty_cache()


def sync(s: Settings) -> None:
    if s.cuda:
        torch.cuda.synchronize()


def reset_peak(s: Settings) -> None:
    if s.cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(s: Settings) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if s.cuda else None


# --------------------------------------------------------------------------------------------------
# Precision and the training step
# --------------------------------------------------------------------------------------------------


def autocast(precision: str, device: str) -> AbstractContextManager[Any]:
    if precision in ("16-mixed", "fp16"):
        return torch.autocast(device, dtype=torch.float16)
    if precision in ("bf16-mixed", "bf16"):
        return torch.autocast(device, dtype=torch.bfloat16)
    return nullcontext()


def make_step(
    params: list[torch.nn.Parameter], loss_fn: Callable[[], torch.Tensor], precision: str, device: str
) -> tuple[Callable[[], torch.Tensor], Callable[[], None]]:
    """One training step (forward and loss under autocast, backward, SGD, zero_grad) and its clean-up.
    16-mixed scales the loss with a GradScaler, as Lightning's 16-mixed does."""
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(device) if precision == "16-mixed" else None

    def step() -> torch.Tensor:
        with autocast(precision, device):
            loss = loss_fn()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def done() -> None:
        opt.zero_grad(set_to_none=True)
        opt.state.clear()

    return step, done


def count_syncs(step: Callable[[], Any], s: Settings) -> tuple[int | None, dict[str, int] | None]:
    """Run one step with ``set_sync_debug_mode("warn")`` and count its synchronisation warnings, with the
    source lines (file:line, last two path parts) that raised them. (None, None) off CUDA."""
    if not s.cuda:
        step()
        return None, None
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    found = [w for w in caught if SYNC_MESSAGE in str(w.message)]
    sites = Counter(f"{'/'.join(Path(w.filename).parts[-2:])}:{w.lineno}" for w in found)
    return len(found), dict(sites.most_common(12))


def finite_or_none(x: float) -> float | None:
    return round(x, 6) if math.isfinite(x) else None


def measure_train(
    step: Callable[[], torch.Tensor], batch: int, s: Settings, runner: Runner
) -> dict[str, Any]:
    """Peak memory over warm-up, counted and timed steps; median of the timed ones (at least one; no more
    once the budget is spent); one step counted for synchronisations, after the warm-up."""
    reset_peak(s)
    for _ in range(max(1, s.warmup)):
        step()
    syncs, sites = count_syncs(step, s)
    times: list[float] = []
    loss = torch.zeros(())
    for _ in range(max(1, s.steps)):
        sync(s)
        t0 = time.perf_counter()
        loss = step()
        sync(s)
        times.append(time.perf_counter() - t0)
        if runner.left() <= 0:
            break
    median = statistics.median(times)
    return {
        "batch": batch,
        "peak_gib": peak_gib(s),
        "step_s": round(median, 4),
        "step_times_s": [round(t, 4) for t in times],
        "cases_per_s": round(batch / median, 3),
        "syncs_per_step": syncs,
        "sync_sites": sites,
        "loss": finite_or_none(float(loss.float())),  # None: not finite (the JSON has no NaN)
    }


# --------------------------------------------------------------------------------------------------
# The model and its inputs
# --------------------------------------------------------------------------------------------------


def build_cdm(preset: str) -> torch.nn.Module:
    return create_model(preset, "CDM", tasks={"diag": CLASSES}, metadata_schema=SCHEMA.to_dict())


class Lazy:
    """The CDM model of the preset, built once on first use (an error is raised again at every use)."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.model: torch.nn.Module | None = None
        self.error: Exception | None = None

    def get(self) -> torch.nn.Module:
        if self.error is not None:
            raise RuntimeError(f"building {self.s.preset} failed: {self.error}")
        if self.model is None:
            try:
                torch.manual_seed(0)
                self.model = build_cdm(self.s.preset).to(self.s.device)
            except Exception as e:
                self.error = e
                raise
        return self.model


def make_batch(model: torch.nn.Module, batch: int, device: str) -> dict[str, Any]:
    """Random inputs at the model's sizes, every modality present, on ``device`` (made there), and
    random diagnosis targets."""
    cfg = model.config
    out: dict[str, Any] = {}
    for letter in cfg.modalities:
        key = BRANCH_KEYS[letter]
        if letter == "M":
            out[key] = (torch.rand(batch, cfg.metadata_dim, device=device) < 0.3).float()
        else:
            size = cfg.clinical.image_size if letter == "C" else cfg.dermoscopy.image_size
            out[key] = torch.randn(batch, 3, size, size, device=device)
        out[keys.present_key(key)] = torch.ones(batch, dtype=torch.bool, device=device)
    out[keys.TARGETS] = {"diag": torch.randint(0, len(CLASSES), (batch,), device=device)}
    return out


def set_clinical_checkpointing(model: torch.nn.Module, enable: bool) -> None:
    """What ``clinical.grad_checkpointing`` sets when the model is built."""
    model.branches["C"].set_grad_checkpointing(enable)


def train_row(
    cdm: Lazy, batch: int, precision: str, ckpt: bool, s: Settings, runner: Runner
) -> dict[str, Any]:
    model = cdm.get().train()
    set_clinical_checkpointing(model, ckpt)
    data = make_batch(model, batch, s.device)
    tasks = model.config.task_specs

    def loss_fn() -> torch.Tensor:
        return task_losses(model(data)[keys.LOGITS], data[keys.TARGETS], tasks)[0]

    step, done = make_step(list(model.parameters()), loss_fn, precision, s.device)
    try:
        result = measure_train(step, batch, s, runner)
    finally:
        done()
    return {"precision": precision, "grad_checkpointing": ckpt, **result}


class TimmParts(torch.nn.Module):
    """The encoders' work with stock timm parts: Swin-T on the global view (``global_size``) and on the
    ``num_crops`` crops (``crop_size``; a second Swin-T instance, since timm's is built for one input
    size), ViT-S/16 on the dermoscopy windows; the loss sums a cross-entropy per part (crops and windows
    averaged per case)."""

    def __init__(self, cfg: Any, kwargs: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        import timm

        c, d = cfg.clinical, cfg.dermoscopy
        n = len(CLASSES)
        swin, vit = "swin_tiny_patch4_window7_224", "vit_small_patch16_224"
        sw, vt = kwargs.get("swin", {}), kwargs.get("vit", {})
        self.global_swin = timm.create_model(
            swin, pretrained=False, img_size=c.global_size, num_classes=n, **sw
        )
        self.crop_swin = timm.create_model(swin, pretrained=False, img_size=c.crop_size, num_classes=n, **sw)
        self.vit = timm.create_model(vit, pretrained=False, img_size=d.window_size, num_classes=n, **vt)
        self.sizes = {
            "global_size": c.global_size,
            "crop_size": c.crop_size,
            "crops_per_case": c.num_crops,
            "window_size": d.window_size,
            "windows_per_case": (d.image_size // d.window_size) ** 2,
        }

    def inputs(self, batch: int, device: str) -> dict[str, torch.Tensor]:
        z = self.sizes
        g, c, w = z["global_size"], z["crop_size"], z["window_size"]
        return {
            "global": torch.randn(batch, 3, g, g, device=device),
            "crops": torch.randn(batch * z["crops_per_case"], 3, c, c, device=device),
            "windows": torch.randn(batch * z["windows_per_case"], 3, w, w, device=device),
            "y": torch.randint(0, len(CLASSES), (batch,), device=device),
        }

    def loss(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        F = torch.nn.functional
        y, B = x["y"], x["y"].shape[0]
        g = self.global_swin(x["global"])
        c = self.crop_swin(x["crops"]).view(B, -1, g.shape[-1]).mean(1)
        w = self.vit(x["windows"]).view(B, -1, g.shape[-1]).mean(1)
        return F.cross_entropy(g, y) + F.cross_entropy(c, y) + F.cross_entropy(w, y)


def timm_row(
    parts: Callable[[], TimmParts], batch: int, precision: str, s: Settings, runner: Runner
) -> dict[str, Any]:
    model = parts().train()
    x = model.inputs(batch, s.device)
    step, done = make_step(list(model.parameters()), lambda: model.loss(x), precision, s.device)
    try:
        result = measure_train(step, batch, s, runner)
    finally:
        done()
    return {"precision": precision, **model.sizes, **result}


def infer_row(cdm: Lazy, batch: int, precision: str, s: Settings) -> dict[str, Any]:
    model = cdm.get().eval()
    data = make_batch(model, batch, s.device)
    data.pop(keys.TARGETS)
    times: list[float] = []
    reset_peak(s)
    with torch.inference_mode(), autocast(precision, s.device):
        for _ in range(max(1, s.warmup)):
            model(data)
        for _ in range(max(1, s.infer_repeats)):
            sync(s)
            t0 = time.perf_counter()
            model(data)
            sync(s)
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "batch": batch,
        "precision": precision,
        "peak_gib": peak_gib(s),
        "median_ms": round(1000 * median, 3),
        "p95_ms": round(1000 * float(np.percentile(times, 95)), 3),
        "cases_per_s": round(batch / median, 3),
        "repeats": len(times),
    }


# --------------------------------------------------------------------------------------------------
# Attention kernels
# --------------------------------------------------------------------------------------------------


def cls_wmsa_shape(model: torch.nn.Module, batch: int) -> dict[str, int]:
    """The 4-D call CLS-WMSA makes in the global encoder's first stage (``window_attention``):
    q (B, nW*h, n, d), k and v (B, nW*h, n+1, d), bias (1, nW*h, n, n+1)."""
    c = model.config.clinical
    G = model.branches["C"].global_encoder
    grid = c.global_size // c.patch_size
    window = G.stage_window(0, grid)
    padded = -(-grid // window) * window
    heads = c.num_heads[0]
    return {
        "batch": batch,
        "windows_x_heads": (padded // window) ** 2 * heads,
        "queries": window * window,
        "keys": window * window + 1,
        "head_dim": c.embed_dim // heads,
    }


def try_kernel(backend: Any, shape: dict[str, int], dtype: torch.dtype, device: str) -> dict[str, str]:
    from torch.nn.attention import sdpa_kernel

    B, H, n, m, d = (shape[k] for k in ("batch", "windows_x_heads", "queries", "keys", "head_dim"))
    result = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            q = torch.randn(B, H, n, d, device=device, dtype=dtype, requires_grad=True)
            k = torch.randn(B, H, m, d, device=device, dtype=dtype, requires_grad=True)
            v = torch.randn(B, H, m, d, device=device, dtype=dtype, requires_grad=True)
            bias = torch.randn(1, H, n, m, device=device, dtype=dtype, requires_grad=True)
            with sdpa_kernel(backend):
                z = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
                result["forward"] = "ok"
                z.float().sum().backward()
                if device == "cuda":
                    torch.cuda.synchronize()  # a kernel's failure shows here, inside the try
                result["backward"] = "ok"
        except Exception as e:
            why = "; ".join(
                re.sub(r"\s*\(Triggered internally at [^)]*\)", "", str(w.message)) for w in caught
            )
            why = why[:400]
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
            result.setdefault("forward", "error")
            result["backward"] = "error" if result["forward"] == "ok" else "not run"
            result["error"] = f"{msg} ({why})" if why else msg
    return result


def sdpa_row(cdm: Lazy, s: Settings) -> dict[str, Any]:
    from torch.nn.attention import SDPBackend

    shape = cls_wmsa_shape(cdm.get(), s.batches[0])
    kernels: dict[str, dict[str, dict[str, str]]] = {}
    usable: dict[str, list[str]] = {}
    for dname, dtype in SDPA_DTYPES.items():
        kernels[dname] = {}
        for name in SDPA_BACKENDS:
            backend = getattr(SDPBackend, name, None)
            if backend is None:
                kernels[dname][name] = {
                    "forward": "not run",
                    "backward": "not run",
                    "error": "not in this torch",
                }
                continue
            kernels[dname][name] = try_kernel(backend, shape, dtype, s.device)
        usable[dname] = [n for n, r in kernels[dname].items() if r.get("backward") == "ok"]
    return {"shape": shape, "usable_forward_and_backward": usable, "kernels": kernels}


# --------------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------------


def write_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """``count`` JPEGs of ``size`` (width, height): smooth colour fields with noise, like photos in size."""
    w, h = size
    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack(
            [128 + 100 * np.sin(xx / (w / (2 + i + c)) + yy / (h / (3 + c))) for c in range(3)], axis=-1
        )
        img = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"case_{i:03d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        paths.append(path)
    return paths


class JpegCases(torch.utils.data.Dataset):
    """Case i: a photo and a dermoscopy image (two of the files), decoded with the project's
    ``load_image`` and transformed for training at the model's sizes, as uint8 (what the data sets yield;
    normalised on the device, :func:`remixformer.layers.imaging.normalize_images`)."""

    def __init__(self, files: list[Path], cases: int, clinical_size: int, dermoscopy_size: int) -> None:
        self.files = [str(f) for f in files]
        self.cases = cases
        self.clinical = build_image_transform(clinical_size, train=True, normalize=False)
        self.dermoscopy = build_image_transform(dermoscopy_size, train=True, normalize=False)

    def __len__(self) -> int:
        return self.cases

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self.files)
        return {
            keys.CLINICAL: self.clinical(load_image(self.files[i % n])),
            keys.DERMOSCOPY: self.dermoscopy(load_image(self.files[(i + 1) % n])),
        }


def loader_row(cdm: Lazy, s: Settings) -> dict[str, Any]:
    cfg = cdm.get().config
    workers = min(8, os.cpu_count() or 1)
    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    with tempfile.TemporaryDirectory(prefix="gpu_check_jpegs_") as tmp:
        t0 = time.perf_counter()
        files = write_jpegs(Path(tmp), s.loader_files, s.loader_px)
        write_s = time.perf_counter() - t0
        ds = JpegCases(files, s.loader_cases, cfg.clinical.image_size, cfg.dermoscopy.image_size)
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=s.loader_batch,
            num_workers=workers,
            pin_memory=s.cuda,
            multiprocessing_context=context if workers > 0 else None,
        )
        t0 = time.perf_counter()
        batches = iter(loader)
        first = next(batches)
        t_first = time.perf_counter()
        total = 0
        for b in [first, *batches]:
            for x in b.values():
                normalize_images(x.to(s.device, non_blocking=True))
            total += len(b[keys.CLINICAL])
        sync(s)
        t_end = time.perf_counter()
    after_first = total - len(first[keys.CLINICAL])
    bytes_per_case = sum(x[0].numel() * x.element_size() for x in first.values())
    return {
        "files": s.loader_files,
        "file_px": list(s.loader_px),
        "cases": s.loader_cases,
        "batch_size": s.loader_batch,
        "num_workers": workers,
        "clinical_size": cfg.clinical.image_size,
        "dermoscopy_size": cfg.dermoscopy.image_size,
        "transfer": f"{first[keys.CLINICAL].dtype}, {bytes_per_case / 2**20:.1f} MiB per case",
        "write_s": round(write_s, 2),
        "first_batch_s": round(t_first - t0, 3),
        "cases_per_s": round(after_first / (t_end - t_first), 3) if after_first else None,
        "cases_per_s_overall": round(total / (t_end - t0), 3),
    }


# --------------------------------------------------------------------------------------------------
# DDP smoke: two processes of this script
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ddp_row(s: Settings, runner: Runner) -> dict[str, Any]:
    if s.dry_run and not s.ddp_on_cpu:
        raise Skip("dry run: needs 2+ GPUs (--ddp-on-cpu runs it on two CPU processes)")
    if not s.dry_run and torch.cuda.device_count() < 2:
        raise Skip(f"needs 2+ GPUs, found {torch.cuda.device_count()}")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gpu_check_ddp_") as tmp:
        out = Path(tmp) / "ddp.json"
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs = []
        for rank in range(2):
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--ddp-worker",
                str(rank),
                "--ddp-out",
                str(out),
            ]
            cmd += ["--dry-run"] if s.dry_run else []
            procs.append(
                subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            )
        timeout = max(30.0, min(240.0, runner.left()))
        logs = []
        try:
            for p in procs:
                logs.append(p.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise RuntimeError(f"the two DDP processes did not finish in {timeout:.0f} s") from None
        codes = [p.returncode for p in procs]
        if any(codes) or not out.exists():
            tail = " | ".join(log.strip().splitlines()[-1] if log.strip() else "" for log in logs)
            raise RuntimeError(f"DDP processes exited with {codes}: {tail}")
        return json.loads(out.read_text())


def ddp_worker(rank: int, out: Path, s: Settings) -> int:
    """One rank of the DDP smoke: DDP with find_unused_parameters (as the trainer's strategy), SGD steps
    on random batches (different per rank), then every rank's weight checksum compared."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    backend = "gloo" if s.dry_run else "nccl"
    dist.init_process_group(backend, rank=rank, world_size=2)
    try:
        device = "cpu" if s.dry_run else f"cuda:{rank}"
        if not s.dry_run:
            torch.cuda.set_device(rank)
        torch.manual_seed(0)
        model = build_cdm(s.preset).to(device).train()
        ddp = DistributedDataParallel(
            model, device_ids=None if s.dry_run else [rank], find_unused_parameters=True
        )
        opt = torch.optim.SGD(ddp.parameters(), lr=1e-3, momentum=0.9)
        times = []
        for i in range(s.ddp_steps):
            torch.manual_seed(1000 * rank + i)
            data = make_batch(model, s.ddp_batch, device)
            if not s.dry_run:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = task_losses(ddp(data)[keys.LOGITS], data[keys.TARGETS], model.config.task_specs)[0]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if not s.dry_run:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
        sums = [torch.zeros_like(checksum) for _ in range(2)]
        dist.all_gather(sums, checksum)
        if rank == 0:
            values = [float(x) for x in sums]
            out.write_text(
                json.dumps(
                    {
                        "world_size": dist.get_world_size(),
                        "backend": backend,
                        "batch_per_rank": s.ddp_batch,
                        "step_times_s": [round(t, 4) for t in times],
                        "step_s": round(statistics.median(times[1:] or times), 4),
                        "weight_checksums": values,
                        "weights_agree": values[0] == values[1],
                    }
                )
            )
    finally:
        dist.destroy_process_group()
    return 0


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def environment(s: Settings) -> dict[str, Any]:
    import lightning
    import timm

    env: dict[str, Any] = {
        "device": s.device,
        **machine(
            timm=timm.__version__,
            lightning=lightning.__version__,
            cuda=torch.version.cuda,
            float32_matmul_precision=torch.get_float32_matmul_precision(),
            gpu=None,
        ),
    }
    if s.cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(props.total_memory / 2**30, 2),
            compute_capability=f"{props.major}.{props.minor}",
            cudnn=torch.backends.cudnn.version(),
        )
    return env


def row_keys(s: Settings) -> list[str]:
    """Every row of a run with these settings, in the order they run."""
    first, rest = s.batches[:1], s.batches[1:]

    def train(batches: list[int]) -> list[str]:
        out = []
        for b in batches:
            for p in PRECISIONS:
                out += [f"train/b{b}/{p}/ckpt_off", f"train/b{b}/{p}/ckpt_on", f"timm_parts/b{b}/{p}"]
        return out

    infer = [f"infer/b{b}/{p}" for b in s.infer_batches for p in INFER_PRECISIONS]
    return ["sdpa", *train(first), *infer, "loader", "ddp", *train(rest)]


def run_all(s: Settings) -> tuple[dict[str, dict[str, Any]], float]:
    runner = Runner(s)
    cdm = Lazy(s)
    timm_parts: list[TimmParts] = []

    def parts() -> TimmParts:
        if not timm_parts:
            torch.manual_seed(0)
            timm_parts.append(TimmParts(cdm.get().config, s.timm_kwargs).to(s.device))
        return timm_parts[0]

    for key in row_keys(s):
        kind, *rest = key.split("/")
        if kind == "sdpa":
            runner.run(key, lambda: sdpa_row(cdm, s))
        elif kind == "train":
            b, p, ck = int(rest[0][1:]), rest[1], rest[2] == "ckpt_on"
            runner.run(key, lambda b=b, p=p, ck=ck: train_row(cdm, b, p, ck, s, runner))
        elif kind == "timm_parts":
            b, p = int(rest[0][1:]), rest[1]
            runner.run(key, lambda b=b, p=p: timm_row(parts, b, p, s, runner))
        elif kind == "infer":
            b, p = int(rest[0][1:]), rest[1]
            runner.run(key, lambda b=b, p=p: infer_row(cdm, b, p, s))
        elif kind == "loader":
            runner.run(key, lambda: loader_row(cdm, s))
        elif kind == "ddp":
            runner.run(key, lambda: ddp_row(s, runner))
    return runner.rows, time.perf_counter() - runner.start


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """CDM step / timm-parts step, same batch and precision, for every pair that ran."""
    out = {}
    for key, row in rows.items():
        if not key.startswith("train/") or row["status"] != "ok":
            continue
        _, b, p, _ = key.split("/")
        ref = rows.get(f"timm_parts/{b}/{p}", {})
        if ref.get("status") == "ok":
            out[key] = round(row["step_s"] / ref["step_s"], 3)
    return out


def _fmt(x: Any, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: dict[str, dict[str, Any]], rel: dict[str, float]) -> None:
    print()
    print(f"{'row':<34} {'status':<8} {'peak GiB':>9} {'step s':>8} {'cases/s':>9} {'syncs':>6} {'/timm':>6}")
    for key, r in rows.items():
        head = f"{key:<34} {r['status']:<8}"
        if r["status"] != "ok":
            print(f"{head} {(r.get('error') or r.get('reason') or '')[:110]}")
        elif key.startswith(("train/", "timm_parts/")):
            peak, syncs, ratio = (
                _fmt(r["peak_gib"], ".2f"),
                _fmt(r["syncs_per_step"], "d"),
                _fmt(rel.get(key), ".2f"),
            )
            print(f"{head} {peak:>9} {r['step_s']:>8.3f} {r['cases_per_s']:>9.2f} {syncs:>6} {ratio:>6}")
        elif key.startswith("infer/"):
            peak = _fmt(r["peak_gib"], ".2f")
            print(f"{head} {peak:>9} {r['median_ms'] / 1000:>8.3f} {r['cases_per_s']:>9.2f}")
        elif key == "loader":
            print(f"{head} {'':>9} {'':>8} {_fmt(r['cases_per_s'], '.2f'):>9}   ({r['num_workers']} workers)")
        elif key == "sdpa":
            usable = r["usable_forward_and_backward"]
            print(f"{head} usable: " + "; ".join(f"{d} {', '.join(n) or 'none'}" for d, n in usable.items()))
        elif key == "ddp":
            print(f"{head} {r['backend']}, step {r['step_s']:.3f} s, weights agree: {r['weights_agree']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", nargs="+", type=int, help="training batch sizes (default 8 64; dry run: 2)")
    p.add_argument("--infer-batches", nargs="+", type=int, help="inference batch sizes (default 1 16)")
    p.add_argument("--steps", type=int, help="timed training steps per row (default 3; dry run 2)")
    p.add_argument("--warmup", type=int, help="untimed warm-up steps per row (default 1)")
    p.add_argument("--budget-s", type=float, default=480.0, help="rows not started by then are skipped")
    p.add_argument("--dry-run", action="store_true", help="CPU, remixformer_tiny, tiny sizes: a smoke run")
    p.add_argument("--ddp-on-cpu", action="store_true", help="dry run: run the DDP smoke on 2 CPU processes")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--ddp-worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--ddp-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if any(b < 1 for b in [*(args.batches or []), *(args.infer_batches or [])]):
        p.error("batch sizes must be positive")
    if any(n is not None and n < 1 for n in (args.steps, args.warmup)):
        p.error("--steps and --warmup must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    s = settings_for(args)
    if args.ddp_worker is not None:
        return ddp_worker(args.ddp_worker, args.ddp_out, s)
    if not s.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device here; --dry-run runs the same rows on the CPU", file=sys.stderr)
        return 2
    print(f"gpu_check: {s.preset} on {s.device}, batches {s.batches}, budget {s.budget_s:g} s", flush=True)
    env = environment(s)
    rows, total = run_all(s)
    rel = ratios(rows)
    print_table(rows, rel)
    report = {
        "benchmark": "gpu_check",
        "dry_run": s.dry_run,
        "environment": env,
        "settings": asdict(s),
        "rows": rows,
        "ratios_cdm_to_timm_parts": rel,
        "total_s": round(total, 1),
    }
    out = args.out or ROOT / "benchmarks" / "results" / (
        "gpu_check-dry-run.json" if s.dry_run else "gpu_check.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    print(f"\nwrote {out} ({total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
