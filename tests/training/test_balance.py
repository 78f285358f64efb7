"""Class imbalance: loss weights on a known split, sampler frequencies and determinism, absent classes."""

import json

import numpy as np
import pytest
import torch
from train_helpers import tiny_config

from remixformer.data.cases import Case, CaseTable
from remixformer.data.sampling import EpochSampler
from remixformer.schema import MetadataSchema
from remixformer.tasks import TaskSpec
from remixformer.training.balance import class_balance, loss_weights, sampling_weights
from remixformer.training.module import task_losses
from remixformer.training.run import train

DIAG = TaskSpec("diag", ("a", "b", "c"))
CRIT = TaskSpec("crit", ("x", "y"))


def table_with(labels, crit=None):
    cases = [
        Case(
            case_id=f"c{i}",
            group_id=f"g{i}",
            targets={"diag": y, **({"crit": crit[i]} if crit is not None else {})},
        )
        for i, y in enumerate(labels)
    ]
    tasks = (DIAG, CRIT) if crit is not None else (DIAG,)
    return CaseTable("toy", cases, tasks, MetadataSchema([]), modalities="C")


def test_inverse_and_effective_weights_on_a_known_split():
    counts = np.array([60, 30, 10])
    w = loss_weights(counts, "inverse")
    # N / (K n_c) = 100 / (3 n_c): 0.5556, 1.1111, 3.3333; the mean weight per case is 1
    np.testing.assert_allclose(w, [100 / 180, 100 / 90, 100 / 30])
    assert (w * counts).sum() == pytest.approx(counts.sum())
    e = loss_weights(counts, "effective", beta=0.9)
    raw = (1 - 0.9) / (1 - 0.9 ** counts.astype(float))
    np.testing.assert_allclose(e, raw * 100 / (raw * counts).sum())
    assert e[0] < e[1] < e[2]
    # beta -> 0 gives equal weights (no re-weighting)
    np.testing.assert_allclose(loss_weights(counts, "effective", beta=1e-9), [1, 1, 1], rtol=1e-6)


def test_class_balance_counts_only_the_training_cases_for_every_single_label_task(tmp_path):
    labels = [0] * 6 + [1] * 3 + [2] * 1 + [0, 1]  # the last two are not training cases
    crit = [0, 1] * 6
    table = table_with(labels, crit)
    info = class_balance(table, list(range(10)), (DIAG, CRIT), "loss")
    assert info["tasks"]["diag"]["counts"] == [6, 3, 1]
    np.testing.assert_allclose(info["tasks"]["diag"]["loss_weights"], [10 / 18, 10 / 9, 10 / 3])
    assert info["tasks"]["crit"]["counts"] == [5, 5]
    np.testing.assert_allclose(info["tasks"]["crit"]["loss_weights"], [1, 1])
    assert class_balance(table, list(range(10)), (DIAG,), "none") == {"mode": "none", "tasks": {}}


def test_a_class_without_training_cases_is_a_clear_error_not_an_infinite_weight():
    table = table_with([0, 0, 1, 1, 2])
    for mode in ("loss", "sampler"):
        with pytest.raises(ValueError, match=r"task 'diag' has no training case of class\(es\) \['c'\]"):
            class_balance(table, [0, 1, 2, 3], (DIAG,), mode)


def test_weighted_loss_equals_torch_weighted_cross_entropy_with_smoothing():
    logits = {"diag": torch.randn(6, 3)}
    y = torch.tensor([0, 0, 1, 2, -1, 2])
    w = torch.tensor([0.5, 1.0, 3.0])
    total, _ = task_losses(logits, {"diag": y}, (DIAG,), {"diag": w}, label_smoothing=0.1)
    known = y >= 0
    ref = torch.nn.functional.cross_entropy(logits["diag"][known], y[known], weight=w, label_smoothing=0.1)
    torch.testing.assert_close(total, ref)
    plain, _ = task_losses(logits, {"diag": y}, (DIAG,))
    assert not torch.allclose(plain, total)


def test_sampler_draws_classes_in_proportion_to_the_power_of_their_counts():
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    counts = np.array([900, 90, 10])
    for power in (0.0, 0.5, 1.0):
        w = sampling_weights(labels, counts, power)
        per_class = np.array([w[labels == c].sum() for c in range(3)])
        expected = counts**power / (counts**power).sum()
        np.testing.assert_allclose(per_class, expected)
    # the draws themselves follow those probabilities (sqrt: 30 : 9.49 : 3.16)
    s = EpochSampler(1000, seed=0, weights=sampling_weights(labels, counts, 0.5))
    drawn = np.concatenate([labels[[i for i, _ in (s.set_epoch(e) or s)]] for e in range(20)])
    freq = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(freq, np.sqrt(counts) / np.sqrt(counts).sum(), atol=0.01)


def test_unknown_labels_keep_their_natural_share_of_the_draws():
    labels = np.array([0, 0, 0, 1, -1, -1])
    w = sampling_weights(labels, np.array([3, 1]), 0.0)
    assert w[labels == -1].sum() == pytest.approx(2 / 6)
    assert w[labels == 0].sum() == pytest.approx(w[labels == 1].sum())


def test_balanced_sampler_is_a_function_of_seed_and_epoch_and_shards_by_rank():
    w = np.linspace(1, 10, 50)
    a = EpochSampler(50, seed=4, weights=w)
    a.set_epoch(3)
    b = EpochSampler(50, seed=4, weights=w)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    whole = [i for i, _ in a]
    ranks = []
    for r in range(2):
        s = EpochSampler(50, seed=4, weights=w, rank=r, world_size=2)
        s.set_epoch(3)
        ranks.append([i for i, _ in s])
    assert sorted(ranks[0] + ranks[1]) == sorted(whole)
    assert ranks[0] == whole[0::2] and len(ranks[0]) == len(ranks[1]) == 25
    with pytest.raises(ValueError, match="sampler weights"):
        EpochSampler(3, weights=[1.0, float("nan"), 1.0])


def test_a_run_writes_the_weights_it_used(synth_root, tmp_path):
    cfg = tiny_config(synth_root, tmp_path, "train.max_epochs=1", "train.class_balance=loss")
    summary = train(cfg)
    info = json.loads((tmp_path / "tiny" / "class_balance.json").read_text())
    splits = (tmp_path / "tiny" / "splits.csv").read_text()
    assert info["mode"] == "loss" and summary["best_epoch"] is not None
    n_train = sum(1 for line in splits.splitlines()[1:] if ",train," in line)
    assert sum(info["tasks"]["diag"]["counts"]) == n_train
    w, n = np.array(info["tasks"]["diag"]["loss_weights"]), np.array(info["tasks"]["diag"]["counts"])
    assert (w * n).sum() == pytest.approx(n.sum())
