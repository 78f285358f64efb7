"""``remixformer models``: the presets, their sizes and the parameters of each branch."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model presets and their parameter counts", description=__doc__)
    p.add_argument("--modalities", default="CDM", help="modalities to build (default CDM)")
    p.add_argument("--config", action="store_true", help="print each preset's full config as YAML")
    p.add_argument(
        "--paper",
        action="store_true",
        help="parameter counts of the rows of the paper's Tables X, XII, XIII and XIV beside the paper's",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from remixformer import create_model, list_models
    from remixformer.config import to_dict

    if args.paper:
        from remixformer.models.paper_sizes import format_table, paper_size_table

        print(format_table(paper_size_table()))
        return 0
    for name in list_models():
        model = create_model(name, args.modalities, tasks=12, metadata_dim=40)
        parts = ", ".join(f"{m} {model.num_parameters(f'branches.{m}') / 1e6:.1f}M" for m in model.branches)
        print(f"{name:20s} {model.num_parameters() / 1e6:7.1f}M  ({parts}; 12 classes, 40 metadata slots)")
        if args.config:
            print(yaml.safe_dump(to_dict(model.config), sort_keys=False))
    return 0
