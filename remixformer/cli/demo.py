"""``remixformer demo``: the main job on the embedded default. Generates the synthetic set, trains the
small model for CDM and for each single modality on the CPU, evaluates them on the test split and
prints a modality table in the layout of the paper's Table XIV (figures and reports in --out)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="end-to-end demo on the synthetic set (CDM vs C, D, M)", description=__doc__
    )
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out); reruns reuse it")
    p.add_argument("--cases", type=int, default=600, help="synthetic cases (default 600)")
    p.add_argument(
        "--test-cases",
        type=int,
        default=400,
        help="test-only cases added to the set, for a less noisy table (default 400)",
    )
    p.add_argument("--epochs", type=int, default=12, help="training epochs per model (default 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--modalities",
        nargs="+",
        default=["CDM", "C", "D", "M"],
        help="modality subsets to train (default CDM C D M)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from remixformer.demo import run_demo

    if not args.verbose:  # the demo prints its own progress lines
        logging.getLogger("remixformer").setLevel(logging.WARNING)
    res = run_demo(
        args.out,
        cases=args.cases,
        epochs=args.epochs,
        seed=args.seed,
        test_cases=args.test_cases,
        modalities=tuple(m.upper() for m in args.modalities),
    )
    print()
    print(res["table"])
    floor = res["majority_class"]
    print(f"(always answering {floor['class']}: accuracy {100 * floor['accuracy']:.1f}%)")
    for mods, lsm in res.get("lsm_hit_rate", {}).items():
        print(
            f"(Ours-{mods} lesion selection: the lesion's centre inside one of its {lsm['crops']} crops "
            f"on {100 * lsm['hit_rate']:.0f}% of {lsm['photos']} photos; chance {100 * lsm['chance']:.0f}%)"
        )
    print(
        f"\nfinished in {res['seconds']:.0f} s; reports in {args.out}/runs/*/eval/test_complete_cases, "
        f"figure {args.out}/figures/modalities.png, table {args.out}/table.md"
    )
    return 0
