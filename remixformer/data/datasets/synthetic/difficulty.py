"""Difficulty: the Bayes-optimal accuracy of every modality subset, from the latent variables."""

from __future__ import annotations

import numpy as np

from remixformer.data.datasets.synthetic.design import (
    AGE_MEAN,
    AGE_SD,
    ATTRIBUTE_TASKS,
    CLASSES,
    DARKNESS_MEAN,
    P_CHANGED,
    P_ELEVATION,
    P_LOCATION,
    P_MALE,
    P_PATTERN,
    P_PN,
    P_PRESENT,
    PRIOR,
    REDNESS_MEAN,
    Latents,
    sample_latents,
)
from remixformer.schema import AGE_BINS

# ----------------------------------------------------------------------------------------------------
# Difficulty: Bayes-optimal accuracy from the latent variables


def _modality_loglik(lat: Latents) -> dict[str, np.ndarray]:
    """Per-case log-likelihood of every class, per modality, of what a perfect reader of that modality
    sees: clinical pattern, redness and darkness; the seven attributes; the binned metadata (blanks
    contribute 0)."""
    from scipy.stats import norm

    n = len(lat.diag)
    out = {}
    lc = np.log(P_PATTERN[:, lat.pattern].T) + norm.logpdf(lat.redness[:, None], REDNESS_MEAN[None, :], 1.0)
    lc = lc + norm.logpdf(lat.darkness[:, None], DARKNESS_MEAN[None, :], 1.0)
    out["C"] = np.where(lat.has_clinical[:, None], lc, 0.0)
    ld = np.log(P_PN[:, lat.attributes[:, 0]].T)
    for k in range(1, len(ATTRIBUTE_TASKS)):
        p = P_PRESENT[:, k - 1][None, :]
        ld = ld + np.where(lat.attributes[:, k : k + 1] == 1, np.log(p), np.log(1 - p))
    out["D"] = np.where(lat.has_dermoscopy[:, None], ld, 0.0)
    edges = np.concatenate([[-np.inf], np.asarray(AGE_BINS) - 0.5, [np.inf]])  # ages are whole years
    cdf = norm.cdf((edges[None, :] - AGE_MEAN[:, None]) / AGE_SD)
    p_bin = np.diff(cdf, axis=1)  # (classes, bins)
    age_bin = np.searchsorted(np.asarray(AGE_BINS), lat.age, side="right")
    terms = [
        np.log(p_bin[:, age_bin].T),
        np.where(lat.male[:, None], np.log(P_MALE)[None], np.log(1 - P_MALE)[None]),
        np.log(P_LOCATION[:, lat.location].T),
        np.log(P_ELEVATION[:, lat.elevation].T),
        np.where(lat.changed[:, None], np.log(P_CHANGED)[None], np.log(1 - P_CHANGED)[None]),
    ]
    lm = np.zeros((n, len(CLASSES)))
    for k, t in enumerate(terms):
        lm += np.where(lat.blank[:, k : k + 1], 0.0, t)
    out["M"] = lm
    return out


def bayes_accuracy(n: int = 200_000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Accuracy and balanced accuracy of the Bayes-optimal classifier for every modality subset.

    An upper bound: it reads the latent variables (clinical pattern, attributes, metadata) perfectly,
    as a model could only if it resolved every fine detail. Missing modalities and blank fields occur
    at the generator's rates.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
    lat = sample_latents(rng, n)
    ll = _modality_loglik(lat)
    out = {}
    for subset in ("C", "D", "M", "CD", "CM", "DM", "CDM", ""):
        score = np.log(PRIOR)[None, :] + sum((ll[m] for m in subset), np.zeros((n, len(CLASSES))))
        pred = score.argmax(axis=1)
        recalls = [float((pred[lat.diag == c] == c).mean()) for c in range(len(CLASSES))]
        out[subset or "prior"] = {
            "accuracy": float((pred == lat.diag).mean()),
            "balanced_accuracy": float(np.mean(recalls)),
        }
    return out
