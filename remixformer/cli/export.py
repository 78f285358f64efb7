"""``remixformer export``: a checkpoint as a file for other runtimes or for the Hugging Face Hub.

ONNX (the inference graph of the checkpoint's modalities, dynamic batch axis, one presence mask per
modality; inputs are preprocessed tensors, the contract is in the file's metadata; docs/export.md):

    remixformer export --checkpoint best.safetensors --format onnx --out model.onnx

After writing, the graph is run in onnxruntime beside eager PyTorch on random inputs (all modalities,
each one absent, mixed); the exit code is 1 when a probability differs by more than --tolerance.

A Hugging Face Hub folder (config.json, model.safetensors, README.md model card), to upload with
``huggingface-cli upload`` and to load with ``remixformer.models.hub.from_pretrained``:

    remixformer export --checkpoint best.safetensors --format hf --out hub/remixformer-derm7pt

The clinical encoder G of a model with a clinical branch, as a file that ``model.clinical.pretrained``
loads (the format of ``remixformer pretrain``'s clinical export): a supervised start for another
model's clinical branch, e.g. from a C model trained on dermoscopy images (docs/results.md):

    remixformer export --checkpoint best.safetensors --format clinical-encoder --out clinical_G.safetensors
"""

from __future__ import annotations

import argparse

FORMATS = ("onnx", "hf", "clinical-encoder")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX, a Hugging Face Hub folder or a clinical-encoder file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="a model file (best.safetensors / last.safetensors)")
    p.add_argument(
        "--format",
        required=True,
        choices=FORMATS,
        help="onnx: one .onnx file; hf: a Hub folder; clinical-encoder: G's weights",
    )
    p.add_argument(
        "--out",
        required=True,
        help="the .onnx file (onnx), the folder (hf) or the .safetensors file to write",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="onnx: largest accepted difference of a probability, onnxruntime vs eager (default 1e-4)",
    )
    p.add_argument("--no-optimize", action="store_true", help="onnx: skip onnxscript's graph optimiser")
    p.add_argument(
        "--quantize",
        choices=("int8",),
        help="onnx: int8 weights in the matrix products (onnxruntime dynamic quantisation; faster on "
        "CPUs with int8 dot products, small differences in the probabilities: docs/export.md)",
    )
    p.add_argument(
        "--card", metavar="YAML", help="hf: model-card facts (data, licence, metrics; docs/export.md)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.quantize and args.format != "onnx":
        raise ValueError(f"--quantize applies to --format onnx, not {args.format}")
    if args.format == "onnx":
        if Path(args.out).suffix != ".onnx":
            raise ValueError(f"--out: expected a file name ending in .onnx, got {args.out!r}")
        if not args.tolerance > 0:
            raise ValueError(f"--tolerance must be positive, got {args.tolerance}")
        return _onnx(args)
    if args.format == "clinical-encoder":
        if Path(args.out).suffix != ".safetensors":
            raise ValueError(f"--out: expected a file name ending in .safetensors, got {args.out!r}")
        return _clinical_encoder(args)
    return _hf(args)


def _onnx(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from remixformer.models.checkpoint import load_model
    from remixformer.serving.onnx_export import export_onnx, parity_check, quantize_onnx

    model = load_model(args.checkpoint)
    print(
        f"exporting {args.checkpoint} ({model.config.preset}, modalities {model.modalities}) ...", flush=True
    )
    start = time.perf_counter()
    extra = dict(getattr(model, "checkpoint_extra", {}) or {})
    out = Path(args.out)
    float_path = out.with_name(out.stem + ".float.onnx") if args.quantize else out
    path = export_onnx(model, float_path, extra=extra, optimize=not args.no_optimize)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - start:.0f} s")
    diffs = parity_check(model, path)
    print("parity, max |p_onnxruntime - p_eager| over the probabilities of 3 random cases:")
    for name, d in diffs.items():
        print(f"  {name:<24} {d:.2e}")
    worst = max(diffs.values())
    if not worst <= args.tolerance:
        print(f"FAIL: {worst:.2e} > tolerance {args.tolerance:.0e}")
        return 1
    print(f"OK: max {worst:.2e} <= tolerance {args.tolerance:.0e}")
    if args.quantize:
        q = quantize_onnx(path, out, args.quantize)
        path.unlink()
        size = q.stat().st_size / 2**20
        print(f"wrote {q} ({size:.1f} MiB): {args.quantize} weights in the matrix products")
        print("the same cases, int8 graph against eager (not held to --tolerance; quantisation moves them):")
        for name, d in parity_check(model, q).items():
            print(f"  {name:<24} {d:.2e}")
        print(
            "what it costs on real cases: remixformer evaluate --backend onnxruntime "
            f"--checkpoint {q} (against the eager checkpoint's report)"
        )
    return 0


def _hf(args: argparse.Namespace) -> int:
    from remixformer.models.checkpoint import load_model
    from remixformer.models.hub import load_card_facts, save_pretrained

    model = load_model(args.checkpoint)
    facts = load_card_facts(args.card) if args.card else None
    extra = dict(getattr(model, "checkpoint_extra", {}) or {})
    out = save_pretrained(model, args.out, card=facts, extra=extra)
    print(f"wrote {out}: config.json, model.safetensors, README.md (review the model card before uploading)")
    return 0


def _clinical_encoder(args: argparse.Namespace) -> int:
    from remixformer.models.checkpoint import load_model
    from remixformer.pretrain.export import export_trained_clinical_encoder

    model = load_model(args.checkpoint)
    out = export_trained_clinical_encoder(model, args.out, args.checkpoint)
    n = sum(p.numel() for p in model.branches["C"].global_encoder.parameters())
    print(f"wrote {out}: the clinical encoder G ({n / 1e6:.2f}M parameters) of {args.checkpoint}")
    print(f"load it with model.clinical.pretrained: {out}")
    return 0
