"""Shared fixtures of the evaluation tests: random predictions with deliberate ties, and the official
ISIC scorer called on the same numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest


def random_predictions(
    seed: int, n: int = 300, c: int = 5, *, ties: bool = True, unknown: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Targets (N,) and probabilities (N, C). With ``ties`` about a quarter of the rows have an exact
    tie for the top probability; ``unknown`` rows get the target -1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    y[:c] = np.arange(c)  # every class present
    p = rng.dirichlet(np.ones(c), n)
    p[np.arange(n), y] += rng.uniform(0, 0.5, n)  # better than chance
    if ties:
        rows = rng.choice(n, n // 4, replace=False)
        for r in rows:
            a, b = rng.choice(c, 2, replace=False)
            top = p[r].max()
            p[r, a] = p[r, b] = top  # exact tie at the maximum
    p = p / p.sum(axis=1, keepdims=True)
    if unknown:
        y[rng.choice(np.arange(c, n), unknown, replace=False)] = -1
    return y, p


def official_classification_score(y: np.ndarray, p: np.ndarray, metric: str = "balanced_accuracy"):
    """``isic_challenge_scoring.ClassificationScore`` on one-hot truth and the same probabilities."""
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore

    c = p.shape[1]
    cats = [f"c{i}" for i in range(c)]
    index = [f"ISIC_{i:07d}" for i in range(len(y))]
    truth = pd.DataFrame(np.eye(c)[y], columns=cats, index=index)
    pred = pd.DataFrame(p, columns=cats, index=index)
    weights = pd.DataFrame({"score_weight": 1.0, "validation_weight": 1.0}, index=index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scorer's pandas deprecations, not ours
        return ClassificationScore(truth, pred, weights, ClassificationMetric(metric))


@pytest.fixture
def make_predictions():
    """The :func:`random_predictions` factory."""
    return random_predictions


@pytest.fixture
def official_score():
    """The :func:`official_classification_score` helper."""
    return official_classification_score
