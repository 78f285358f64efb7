"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config (repeatable; later files override earlier ones; `base:` chains allowed)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="overrides of config keys, e.g. train.max_epochs=5 model.modalities=CD",
    )


def load_run_config(args: argparse.Namespace):
    from remixformer.config import resolve
    from remixformer.training.config import RunConfig

    return resolve(RunConfig, args.config, args.overrides)
