"""``remixformer synth``: write the synthetic multi-modal data set (the project's default data)."""

from __future__ import annotations

import argparse
import os
import time


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write the synthetic multi-modal data set (manifest format)",
        description=(
            "Write a synthetic skin-lesion data set (clinical photos, dermoscopy images, metadata, "
            "5 diagnoses and 7 dermoscopic attributes) in the manifest format; deterministic for a seed. "
            "See docs/synthetic.md."
        ),
    )
    parser.add_argument(
        "--out", required=True, help="output folder (must be absent or empty unless --overwrite)"
    )
    parser.add_argument("--cases", type=int, default=600, help="number of cases (default 600)")
    parser.add_argument(
        "--test-cases",
        type=int,
        default=0,
        help="that many more cases, all in the test split, of new patients (a larger test split; the "
        "first --cases cases do not change)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clinical-size", type=int, default=256)
    parser.add_argument("--dermoscopy-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="processes (0: one per CPU, at most 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    parser.add_argument(
        "--bayes", action="store_true", help="also print the Bayes-optimal accuracy of every modality subset"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from remixformer.data.datasets import synthetic

    workers = args.workers or min(4, os.cpu_count() or 1)
    start = time.perf_counter()
    out = synthetic.generate(
        args.out,
        args.cases,
        args.seed,
        clinical_size=args.clinical_size,
        dermoscopy_size=args.dermoscopy_size,
        workers=workers,
        overwrite=args.overwrite,
        test_cases=args.test_cases,
    )
    took = time.perf_counter() - start
    import pandas as pd

    df = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    print(f"wrote {len(df)} cases to {out} in {took:.1f} s (seed {args.seed})")
    counts = pd.crosstab(df["diagnosis"], df["split"]).reindex(columns=["train", "val", "test"], fill_value=0)
    print(counts.to_string())
    n_c = int((df["clinical"] != "").sum())
    n_d = int((df["dermoscopy"] != "").sum())
    print(f"cases with a clinical photo: {n_c}, with a dermoscopy image: {n_d}")
    print(f"use it with: data.dataset=synthetic data.root={out}  (or --manifest {out / 'manifest.csv'})")
    if args.bayes:
        print("\nBayes-optimal diagnosis accuracy from the latent variables (an upper bound):")
        for subset, r in synthetic.bayes_accuracy().items():
            print(
                f"  {subset:6s} accuracy {r['accuracy']:.3f}  balanced accuracy {r['balanced_accuracy']:.3f}"
            )
    return 0
