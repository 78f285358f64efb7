"""``remixformer pretrain``: DINO self-supervised pretraining of the dermoscopy window encoder T_phi1, or
of the clinical CLS-Swin encoder (backbone.encoder=clinical_encoder), on folders of images (labels not
needed) or on the training cases of a data set (data.dataset=..., never its test cases); exports the
teacher backbone.

Examples:
  remixformer pretrain --images archive/ isic2019/ --config configs/pretrain/dino_paper.yaml
  remixformer pretrain -c configs/pretrain/dino_small_cpu.yaml optim.epochs=5 --images data/derm
  remixformer pretrain -c configs/pretrain/dino_small_isic2018.yaml data.root=data/ISIC2018
  remixformer pretrain -c configs/pretrain/dino_small_cpu.yaml --run-dir runs/pretrain/dino_small_cpu --resume

The teacher backbone is written to <run dir>/teacher_backbone.safetensors after every epoch; train with
model.dermoscopy.pretrained (or model.clinical.pretrained): <that file> and the same model preset.
See docs/pretraining.md.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from remixformer.cli.common import add_config_args

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain",
        help="DINO self-supervised pretraining of the window encoder or the clinical encoder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--images",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders of JPEG/PNG dermoscopy images, searched recursively (or windows.images)",
    )
    add_config_args(
        p,
        config_example="configs/pretrain/dino_paper.yaml",
        overrides_example="optim.epochs=20 backbone.pretrained=null",
        overrides_note=" (also accepted after --images)",
    )
    p.add_argument("--run-dir", help="run directory (default: <output_dir>/<name>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the run directory from its last training state",
    )
    p.set_defaults(func=run)


def split_images_and_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """``--images`` is greedy: ``key=value`` items after it that are not existing paths are overrides."""
    images: list[str] = []
    overrides: list[str] = []
    for item in items:
        (overrides if _OVERRIDE.match(item) and not Path(item).exists() else images).append(item)
    return images, overrides


def run(args: argparse.Namespace) -> int:
    from remixformer.config import resolve
    from remixformer.engine.distributed import is_rank_zero
    from remixformer.pretrain.config import PretrainConfig
    from remixformer.pretrain.run import pretrain

    images, extra = split_images_and_overrides(args.images)
    overrides = list(args.overrides) + extra
    cfg = resolve(PretrainConfig, args.config, overrides)
    if images:
        cfg.windows.images = images
    if cfg.windows.images and cfg.data is not None:
        raise ValueError(
            "images from both folders (--images / windows.images) and a data set (data.dataset): give one"
        )
    if not cfg.windows.images and cfg.data is None and not args.resume:
        raise ValueError(
            "no images: pass --images DIR [DIR ...] (or windows.images), or a data set whose training "
            "cases to read (data.dataset=... data.root=...)"
        )
    summary = pretrain(cfg, args.run_dir, resume=args.resume)
    if is_rank_zero():
        print(f"run directory: {summary['run_dir']}")
        print(
            f"{summary['windows']} windows from {summary['images']} images"
            + (
                f" ({summary['unreadable_files']} unreadable files skipped, listed in data.json)"
                if summary["unreadable_files"]
                else ""
            )
        )
        if summary.get("loss") is not None:
            print(
                f"epochs {summary['epochs_trained']}, steps {summary['global_step']}: "
                f"loss {summary['loss']:.4f}, "
                f"teacher entropy {summary['teacher_entropy_ratio']:.3f} of log K"
            )
        for w in summary["collapse_warnings"][-1:]:
            print(f"warning: {w}")
        section = "clinical" if cfg.backbone.encoder == "clinical_encoder" else "dermoscopy"
        what = "clinical encoder" if section == "clinical" else "T_phi1"
        print(f"{what} weights: {summary['export']}")
        print(
            f"use them with model.{section}.pretrained: {summary['export']} (preset "
            f"{cfg.backbone.preset}) or create_model(..., {section}={{'pretrained': PATH}})"
        )
    return 0
