"""A timm ResNet-18 trained from scratch on the dermoscopy images of a remixformer run's data, with the
run's budget and class balance: the baseline row of the ISIC 2018 table in docs/results.md.

    python benchmarks/isic2018_resnet_baseline.py -c configs/isic2018/small_cpu_balanced.yaml \\
        --splits runs/isic2018_small_cpu_balanced/splits.csv --budget-min 90 data.root=PATH/TO/ISIC2018
    python benchmarks/isic2018_resnet_baseline.py ... --quick        # 2 epochs of 2 batches (a smoke run)

What is shared with the remixformer row, so that only the network differs: the cases and their split
(the run's ``splits.csv``: same training, validation and test cases), the images as the run's data
loader gives them (same size, same augmentation, ImageNet normalisation), the class-balanced loss weights
computed by the same code from the same training cases (``train.class_balance``), label smoothing, the
optimiser (AdamW, ``train.lr``, ``train.weight_decay``), warm-up and cosine schedule, batch size, the
epochs (``train.max_epochs``), the choice of the best epoch by validation balanced accuracy, and the
metrics (``evaluate_predictions`` on the test split). What differs: the network
(``timm.create_model("resnet18", pretrained=False)``, 11.2M parameters), and ``--budget-min``, a wall
time after which no further epoch starts (the issue's rule: every row at most 90 minutes on 2 cores).

Resumable: the state after every epoch is written to ``--work-dir``; run the same command again to go on.
Writes ``benchmarks/results/isic2018_resnet_baseline.json`` (``-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's package, whether or not it is installed

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from remixformer import keys  # noqa: E402
from remixformer.config import resolve  # noqa: E402
from remixformer.data.loaders import epoch_loader, evaluation_loader  # noqa: E402
from remixformer.data.registry import load_dataset  # noqa: E402
from remixformer.data.splits import read_splits, splits_from_config  # noqa: E402
from remixformer.evaluation.predictions import Predictions  # noqa: E402
from remixformer.evaluation.report import evaluate_predictions  # noqa: E402
from remixformer.layers.imaging import normalize_images  # noqa: E402
from remixformer.training.config import RunConfig  # noqa: E402
from remixformer.training.datamodule import RemixDataModule  # noqa: E402
from remixformer.training.module import WarmupCosine  # noqa: E402
from remixformer.training.run import build_model_for  # noqa: E402

log = logging.getLogger("isic2018_resnet_baseline")


def predict(net: torch.nn.Module, loader, task: str) -> Predictions:
    """Softmax probabilities of ``net`` over ``loader`` (the diagnosis task only), with the targets."""
    net.eval()
    ids: list[str] = []
    probs, targets = [], []
    with torch.no_grad():
        for batch in loader:
            probs.append(F.softmax(net(normalize_images(batch[keys.DERMOSCOPY])), dim=-1))
            targets.append(batch[keys.TARGETS][task])
            ids += list(batch[keys.CASE_ID])
    return ids, torch.cat(probs).numpy(), torch.cat(targets).numpy()


def metrics_of(spec, ids, probs, targets) -> dict:
    preds = Predictions(ids, (spec,), {spec.name: probs}, {spec.name: targets})
    return evaluate_predictions(preds)["tasks"][spec.name]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", required=True, help="the remixformer row's config (YAML)")
    ap.add_argument("--splits", help="the remixformer run's splits.csv (default: the config's split)")
    ap.add_argument("--budget-min", type=float, default=90.0, help="no epoch starts after this wall time")
    ap.add_argument("--work-dir", default="runs/isic2018_resnet_baseline", help="resumable state")
    ap.add_argument("--out", help="JSON path (default benchmarks/results/isic2018_resnet_baseline.json)")
    ap.add_argument("--quick", action="store_true", help="2 epochs of 2 batches, a few test batches")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides (as for remixformer train)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import timm

    cfg = resolve(RunConfig, [args.config], args.overrides)
    if cfg.model.modalities != "D":
        raise SystemExit(f"error: {args.config}: the baseline is for dermoscopy alone (model.modalities=D)")
    torch.manual_seed(cfg.seed)
    table = load_dataset(cfg.data, modalities="D")
    splits = read_splits(table, args.splits) if args.splits else splits_from_config(table, cfg.data)
    model_cfg = build_model_for(cfg, table).config  # the remixformer row's sizes and tasks, for the loaders
    (spec,) = [s for s in model_cfg.task_specs if s.name == "diag"] or model_cfg.task_specs[:1]
    dm = RemixDataModule(cfg, table, splits, model_cfg)
    balance = dm.balance()
    weights = balance["tasks"].get(spec.name, {}).get("loss_weights")
    t = cfg.train
    opts = dict(cache_images=cfg.data.cache_images, skip_bad_cases=cfg.data.skip_bad_cases, seed=cfg.seed)
    train_ds = dm.dataset("train")
    train = epoch_loader(
        train_ds, t.batch_size, shuffle=True, seed=cfg.seed, weights=balance.get("sample_weights")
    )
    val, _ = evaluation_loader(table, splits["val"], model_cfg, batch_size=t.batch_size, **opts)
    test, _ = evaluation_loader(table, splits["test"], model_cfg, batch_size=t.batch_size, **opts)

    epochs, steps_cap = (2, 2) if args.quick else (t.max_epochs, None)
    steps = steps_cap or len(train)
    net = timm.create_model("resnet18", pretrained=False, num_classes=spec.num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    factor = WarmupCosine(epochs * steps, int(round(t.warmup_epochs * steps)), t.min_lr_ratio, cosine=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    w = torch.as_tensor(weights, dtype=torch.float32) if weights is not None else None

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / ("state-quick.pt" if args.quick else "state.pt")
    state = {"epoch": 0, "history": [], "best": None, "elapsed_s": 0.0}
    if state_path.exists():
        saved = torch.load(state_path, weights_only=False)
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        state = saved["state"]
        log.info("resumed after epoch %d (%.0f s spent)", state["epoch"], state["elapsed_s"])

    n_params = sum(p.numel() for p in net.parameters())
    log.info(
        "ResNet-18 (%.1fM parameters) from scratch: %d train / %d val / %d test cases, %d epochs of %d steps",
        n_params / 1e6,
        len(train_ds),
        len(splits["val"]),
        len(splits["test"]),
        epochs,
        steps,
    )
    while state["epoch"] < epochs and state["elapsed_s"] < args.budget_min * 60:
        t0 = time.time()
        net.train()
        train.sampler.set_epoch(state["epoch"])
        losses = []
        for i, batch in enumerate(train):
            if i >= steps:
                break
            y = batch[keys.TARGETS][spec.name]
            loss = F.cross_entropy(
                net(normalize_images(batch[keys.DERMOSCOPY])),
                y,
                weight=w,
                ignore_index=keys.IGNORE_INDEX,
                label_smoothing=t.label_smoothing,
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        m = metrics_of(spec, *predict(net, val, spec.name))
        state["elapsed_s"] += time.time() - t0
        state["epoch"] += 1
        row = {"epoch": state["epoch"], "loss": float(np.mean(losses)), "val_bacc": m["balanced_accuracy"]}
        state["history"].append(row)
        if state["best"] is None or m["balanced_accuracy"] > state["best"]["val_bacc"]:
            state["best"] = row
            torch.save(net.state_dict(), work / "best.pt")
        done = state["epoch"] / epochs
        eta = state["elapsed_s"] / done * (1 - done)
        log.info(
            "epoch %d/%d: loss %.3f, val BACC %.3f (%.0f s; ETA %.0f min)",
            state["epoch"],
            epochs,
            row["loss"],
            row["val_bacc"],
            time.time() - t0,
            eta / 60,
        )
        torch.save(
            {"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "state": state},
            state_path,
        )

    if state["best"] is None:
        raise SystemExit(f"error: no epoch trained within --budget-min {args.budget_min}")
    net.load_state_dict(torch.load(work / "best.pt"))
    test_metrics = metrics_of(spec, *predict(net, test, spec.name))
    per_class = {c: v["sensitivity"] for c, v in test_metrics.get("per_class", {}).items()}
    result = {
        "benchmark": "ISIC 2018 Task 3 test, dermoscopy: timm ResNet-18 from scratch, the row's recipe",
        "config": args.config,
        "overrides": args.overrides,
        "splits": args.splits,
        "quick": args.quick,
        "seed": cfg.seed,
        "parameters_m": round(n_params / 1e6, 2),
        "epochs_trained": state["epoch"],
        "epochs_planned": epochs,
        "budget_min": args.budget_min,
        "train_time_s": round(state["elapsed_s"], 1),
        "best_epoch": state["best"]["epoch"],
        "history": state["history"],
        "test": {
            "n_cases": len(splits["test"]),
            "balanced_accuracy": test_metrics["balanced_accuracy"],
            "auc_macro": test_metrics.get("auc_macro"),
            "accuracy": test_metrics["accuracy"],
            "recall_per_class": per_class,
        },
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    name = "isic2018_resnet_baseline" + ("-quick" if args.quick else "")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("| network | epochs | BACC | AUC | accuracy | time |\n| --- | --- | --- | --- | --- | --- |")
    print(
        f"| ResNet-18 | {state['epoch']} (best {state['best']['epoch']}) | "
        f"{test_metrics['balanced_accuracy']:.3f} | {test_metrics.get('auc_macro') or float('nan'):.3f} | "
        f"{test_metrics['accuracy']:.3f} | {state['elapsed_s'] / 60:.0f} min |"
    )
    print("recall per class: " + ", ".join(f"{c} {v:.2f}" for c, v in per_class.items() if v is not None))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
