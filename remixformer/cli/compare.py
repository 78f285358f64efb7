"""``remixformer compare RUN_A RUN_B``: paired t-test over cross-validation folds (the paper's p-values)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

DEFAULT_METRICS = ("f1_macro",)


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="paired t-test of two cross-validation runs over their folds",
        description=(
            "Read <run>/cv_results.json of two runs, pair their folds by index and test, for each metric, "
            "whether B differs from A (two-sided paired t-test, scipy.stats.ttest_rel(B, A)). Values are "
            "shown in % as mean±std over folds (sample std)."
        ),
    )
    p.add_argument("run_a", metavar="RUN_A", help="reference run directory (or its cv_results.json)")
    p.add_argument("run_b", metavar="RUN_B", help="run directory to compare with the reference")
    p.add_argument(
        "--metric",
        nargs="+",
        default=list(DEFAULT_METRICS),
        metavar="NAME",
        help="flat metric name(s) from cv_results.json (default: f1_macro), e.g. accuracy balanced_accuracy",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.set_defaults(func=run)


def compare_runs(run_a: str, run_b: str, metric_names: list[str]) -> dict[str, Any]:
    """The comparison as a JSON-safe dict; raises FileNotFoundError/ValueError on unusable inputs."""
    from remixformer.evaluation import stats

    folds_a = stats.load_cv_results(run_a)
    folds_b = stats.load_cv_results(run_b)
    idx, a, b = stats.pair_folds(folds_a, folds_b, names=(run_a, run_b))
    result: dict[str, Any] = {"run_a": run_a, "run_b": run_b, "folds": idx, "metrics": {}}
    for m in metric_names:
        va = stats.fold_values(a, m, what=run_a)
        vb = stats.fold_values(b, m, what=run_b)
        t, p = stats.paired_ttest(list(vb), list(va))  # t > 0 when B is higher
        mean_a, std_a, _ = stats.mean_std(va)
        mean_b, std_b, _ = stats.mean_std(vb)
        result["metrics"][m] = {
            "a": {"mean": mean_a, "std": std_a, "folds": va.tolist()},
            "b": {"mean": mean_b, "std": std_b, "folds": vb.tolist()},
            "diff_mean": float((vb - va).mean()),
            "t": t,
            "p": p,
        }
    return result


def _json_safe(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def format_table(result: dict[str, Any]) -> str:
    from remixformer.evaluation.stats import format_mean_std, format_p_value

    header = ["metric", "A", "B", "B-A", "t", "p"]
    rows = []
    for m, r in result["metrics"].items():
        rows.append(
            [
                m,
                format_mean_std(r["a"]["mean"], r["a"]["std"]),
                format_mean_std(r["b"]["mean"], r["b"]["std"]),
                f"{100.0 * r['diff_mean']:+.1f}",
                f"{r['t']:.3f}",
                format_p_value(r["p"]),
            ]
        )
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = [
        f"A: {result['run_a']}",
        f"B: {result['run_b']}",
        f"{len(result['folds'])} paired folds {result['folds']}; values in %, mean±std (ddof=1); "
        "two-sided paired t-test",
        "",
    ]
    for row in [header, *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = compare_runs(args.run_a, args.run_b, list(args.metric))
    if args.json:
        print(json.dumps(_json_safe(result), indent=2))
    else:
        print(format_table(result))
    return 0
