"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse


def add_config_args(
    p: argparse.ArgumentParser,
    config_example: str = "",
    overrides_example: str = "train.max_epochs=5 model.modalities=CD",
    overrides_note: str = "",
) -> None:
    """``--config FILE`` (repeatable) and the positional ``KEY=VALUE`` overrides of a config command."""
    example = f", e.g. {config_example}" if config_example else ""
    p.add_argument(
        "--config",
        "-c",
        action="append",
        default=[],
        metavar="FILE",
        help=f"YAML config{example} (repeatable; later files override earlier ones; `base:` chains allowed)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help=f"overrides of config keys, e.g. {overrides_example}{overrides_note}",
    )


# the backends of serving.predictor.BACKENDS (not imported: the CLI starts without torch; a test compares)
BACKENDS = ("eager", "onnxruntime")


def add_model_file_args(p: argparse.ArgumentParser) -> None:
    """``--checkpoint`` and ``--backend`` of the commands that run a model file (predict, serve, evaluate):
    a checkpoint in eager PyTorch, or an exported .onnx file (float or int8) in onnxruntime."""
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a model file (best.safetensors), or an .onnx file with --backend onnxruntime",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="eager",
        help="eager PyTorch (default) or onnxruntime over an exported (e.g. int8) .onnx file (CPU only)",
    )


def load_run_config(args: argparse.Namespace):
    from remixformer.config import resolve
    from remixformer.training.config import RunConfig

    return resolve(RunConfig, args.config, args.overrides)


def add_device_arg(p: argparse.ArgumentParser, default: str = "auto", what: str = "the model runs") -> None:
    """``--device``: where ``what`` (cpu, cuda, cuda:N, mps, or auto = CUDA when present, else the CPU);
    read with :func:`device_from_args`."""
    shown = "auto: CUDA when a GPU is present, else cpu" if default == "auto" else default
    help_text = f"where {what}: auto, cpu, cuda, cuda:1, mps (default {shown})"
    p.add_argument("--device", default=default, help=help_text)


def device_from_args(args: argparse.Namespace):
    """The ``torch.device`` of ``--device``, checked to exist here (a ``ValueError`` naming the problem
    otherwise: the command exits with 2 before it loads anything)."""
    from remixformer.engine.devices import resolve_device

    return resolve_device(args.device, "--device")
