"""What the int8 graph (``remixformer export --quantize int8``) costs in accuracy, on trained models and
the test split each was trained for: eager PyTorch against the float ONNX graph and the int8 one.

    python benchmarks/int8_accuracy.py runs/demo/runs/small_cdm/checkpoints/best.safetensors \
        runs/isic2018_small_cpu_clinical/checkpoints/best.safetensors

Per checkpoint: the model is exported (float, then int8 as the export command does), the three
backends predict the checkpoint's test split (``remixformer evaluate``'s data path: the data set named
in the checkpoint, ``--root`` to point elsewhere), and each gets accuracy, balanced accuracy and macro
AUC of the diagnosis, plus, against eager, the share of cases whose top class changes and the largest
and mean absolute difference of a probability. Prints a table; writes
benchmarks/results/int8_accuracy.json. Speed is measured by inference_latency.py, not here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import machine  # noqa: E402
from remixformer.evaluation.evaluate import checkpoint_cases, predict_cases  # noqa: E402
from remixformer.evaluation.metrics import single_label_metrics  # noqa: E402
from remixformer.models.checkpoint import load_model  # noqa: E402
from remixformer.serving.onnx_export import OnnxModel, export_onnx, quantize_onnx  # noqa: E402
from remixformer.tasks import DIAG  # noqa: E402


def scores(preds, task: str = DIAG) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(labels, probabilities, metrics) of one task of aggregated predictions."""
    y, p = preds.targets[task], preds.probs[task]
    m = single_label_metrics(y, p)
    return y, p, {k: round(float(m[k]), 4) for k in ("accuracy", "balanced_accuracy", "auc_macro")}


def bench(ckpt: Path, args: argparse.Namespace, work: Path) -> dict:
    model = load_model(ckpt)
    table, indices, split, _ = checkpoint_cases(model, split="test", root=args.root, where=str(ckpt))
    t0 = time.perf_counter()
    float_path = export_onnx(model, work / f"{ckpt.parent.parent.name}.onnx")
    int8_path = quantize_onnx(float_path, work / f"{ckpt.parent.parent.name}.int8.onnx")
    export_s = round(time.perf_counter() - t0, 1)
    backends = {
        "eager": model,
        "onnxruntime": OnnxModel(float_path, threads=args.threads),
        "onnxruntime-int8": OnnxModel(int8_path, threads=args.threads),
    }
    rows: dict[str, dict] = {}
    ref = None
    for name, m in backends.items():
        t0 = time.perf_counter()
        preds, _ = predict_cases(m, table, indices, batch_size=args.batch_size, progress=False)
        y, p, metrics = scores(preds)
        row = {**metrics, "cases": int(len(y)), "predict_s": round(time.perf_counter() - t0, 1)}
        if ref is None:
            ref = p
        else:
            row["top_class_changed"] = round(float((p.argmax(1) != ref.argmax(1)).mean()), 4)
            row["max_abs_prob_diff"] = float(np.abs(p - ref).max())
            row["mean_abs_prob_diff"] = float(np.abs(p - ref).mean())
        rows[name] = row
    return {
        "checkpoint": str(ckpt),
        "preset": model.config.preset,
        "modalities": model.modalities,
        "data": f"{table.name} {split}",
        "export_and_quantize_s": export_s,
        "onnx_mib": {
            "float": round(float_path.stat().st_size / 2**20, 1),
            "int8": round(int8_path.stat().st_size / 2**20, 1),
        },
        "rows": rows,
    }


def print_table(results: list[dict]) -> None:
    print()
    head = f"{'model':<34} {'backend':<17} {'cases':>6} {'acc':>7} {'BACC':>7} {'AUC':>7} {'top changed':>12}"
    print(head + f" {'max |dp|':>9}")
    for r in results:
        name = f"{Path(r['checkpoint']).parent.parent.name} ({r['modalities']})"
        for backend, row in r["rows"].items():
            changed = f"{100 * row['top_class_changed']:.1f} %" if "top_class_changed" in row else "-"
            diff = f"{row['max_abs_prob_diff']:.4f}" if "max_abs_prob_diff" in row else "-"
            print(
                f"{name:<34} {backend:<17} {row['cases']:>6} {row['accuracy']:>7.4f} "
                f"{row['balanced_accuracy']:>7.4f} {row.get('auc_macro', float('nan')):>7.4f} {changed:>12} "
                f"{diff:>9}"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="model files (best.safetensors)")
    p.add_argument("--root", help="the data set folder, when not where the checkpoints were trained")
    p.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads (default: all)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "int8_accuracy.json")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="int8_accuracy_") as tmp:
        results = [bench(c, args, Path(tmp)) for c in args.checkpoints]
    print_table(results)
    report = {
        "benchmark": "int8_accuracy",
        "machine": machine(onnxruntime=__import__("onnxruntime").__version__),
        "results": results,
        "total_s": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
