"""The demo over several seeds: mean ± std of its table, so a comparison does not rest on one seed and
~87 test cases.

    python benchmarks/demo_seeds.py --seeds 0 1 2 --out demo_seeds     # ~8 min per seed on 2 cores
    python benchmarks/demo_seeds.py --out demo_bs16 --set train.batch_size=16 --json bs16.json  # a variant

Each seed is one ``remixformer demo --seed S --out OUT/seedS`` (its own synthetic set, split and model
initialisation); a seed whose models are already trained there is only evaluated again, so the script
resumes and can also summarise demos run by hand (``--out`` pointing at their parent, folders named
``seed<S>``). Prints accuracy, balanced accuracy, macro AUC and the LSM hit rate per model as mean ±
std over the seeds, with the majority-class floor, and writes ``benchmarks/results/demo_seeds.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import machine, write_json  # noqa: E402
from remixformer.data.datasets.synthetic import CLASSES  # noqa: E402
from remixformer.demo import DEMO_MODALITIES, DEMO_TEST_CASES, run_demo  # noqa: E402

METRICS = (("Acc", "accuracy"), ("BACC", "balanced_accuracy"), ("AUC", "auc_macro"))


def _mean_std(values: list[float]) -> str:
    a = 100 * np.asarray(values, dtype=float)
    return f"{a.mean():.1f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="demo_seeds", help="parent folder of the per-seed demo folders")
    p.add_argument("--cases", type=int, default=600)
    p.add_argument("--test-cases", type=int, default=DEMO_TEST_CASES, help="test-only cases per set")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides applied to every demo model, e.g. train.batch_size=16 (use a fresh --out)",
    )
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "demo_seeds.json"))
    args = p.parse_args(argv)

    per_seed = {}
    for seed in args.seeds:
        t = time.time()
        res = run_demo(
            Path(args.out) / f"seed{seed}",
            cases=args.cases,
            epochs=args.epochs,
            seed=seed,
            overrides=args.set,
            test_cases=args.test_cases,
        )
        per_seed[seed] = {
            "metrics": {m: {k: res["metrics"][m][k] for _, k in METRICS} for m in DEMO_MODALITIES},
            "lsm_hit_rate": {m: v["hit_rate"] for m, v in res.get("lsm_hit_rate", {}).items()},
            "majority_class": res["majority_class"],
            "seconds_this_call": round(time.time() - t, 1),
        }

    head = ["model", *(h for h, _ in METRICS), "LSM hit rate"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for m in DEMO_MODALITIES:
        cells = [f"Ours-{m}"]
        for _, key in METRICS:
            cells.append(_mean_std([s["metrics"][m][key] for s in per_seed.values()]))
        hits = [s["lsm_hit_rate"][m] for s in per_seed.values() if m in s["lsm_hit_rate"]]
        cells.append(_mean_std(hits) if hits else "-")
        lines.append("| " + " | ".join(cells) + " |")
    floor = _mean_std([s["majority_class"]["accuracy"] for s in per_seed.values()])
    # a constant answer: balanced accuracy 1 / classes, AUC 0.5
    lines.append(f"| majority class | {floor} | {100 / len(CLASSES):.1f} | 50.0 | - |")
    table = "\n".join(lines)
    print(table)
    print(f"(mean ± std over seeds {args.seeds}; accuracy, BACC and AUC in %, LSM hit rate in % of photos)")
    out = {
        "command": "python benchmarks/demo_seeds.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "seeds": args.seeds,
        "cases": args.cases,
        "test_cases": args.test_cases,
        "epochs": args.epochs,
        "overrides": args.set,
        "machine": machine(threads=torch.get_num_threads()),
        "per_seed": per_seed,
        "table": table,
    }
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
