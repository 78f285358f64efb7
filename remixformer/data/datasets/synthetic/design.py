"""The generative model: classes, P(view | class) of every view, the metadata schema, the latent variables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from remixformer.schema import AGE_BINS, AGE_RANGE, MetadataSchema, boolean, categorical, numeric
from remixformer.tasks import DIAG

NAME = "synthetic"
# Bump when the generator's output changes. 2: clinical lesion radius 18-26 px (was 10-15). 3: the lesion's
# colour carries the class at the lesion's scale (darkness and redness, visible in the shrunk global view),
# distractor spots take a colour of their own (docs/synthetic.md, "Version 3").
VERSION = 3
CLASSES = ("BCC", "NEV", "MEL", "MISC", "SK")
PRIOR = np.array([0.18, 0.28, 0.24, 0.14, 0.16])

# Clinical micro-pattern of the lesion, P(pattern | class), rows in CLASSES order.
PATTERNS = ("smooth", "grain", "points")
P_PATTERN = np.array(
    [
        [0.12, 0.10, 0.78],  # BCC
        [0.84, 0.10, 0.06],  # NEV
        [0.82, 0.12, 0.06],  # MEL
        [0.10, 0.84, 0.06],  # MISC
        [0.08, 0.86, 0.06],  # SK
    ]
)
# Lesion-scale colour cues, each N(mean, 1), visible at any resolution (version 3; version 2 had a weaker
# redness only, means 0.8, 0, 0.2, 0.6, 0, and no darkness): how dark and how red the lesion is.
REDNESS_MEAN = np.array([1.1, -0.5, 0.1, 0.9, -0.6])
DARKNESS_MEAN = np.array([-0.9, 0.0, 1.0, -0.4, 0.5])
# Clinical lesion radius in pixels of a 256^2 photo, uniform (version 2: 18-26; version 1: 10-15).
LESION_RADIUS = (30.0, 42.0)

# Dermoscopy attributes (Derm7pt-like names). pn has three classes, the others ABS/PRS.
ATTRIBUTE_TASKS = ("pn", "bwv", "vs", "pig", "str", "dag", "rs")
ATTRIBUTE_CLASSES = {"pn": ("ABS", "TYP", "ATP"), **{t: ("ABS", "PRS") for t in ATTRIBUTE_TASKS[1:]}}
P_PN = np.array(
    [[0.90, 0.07, 0.03], [0.10, 0.80, 0.10], [0.15, 0.10, 0.75], [0.10, 0.75, 0.15], [0.20, 0.10, 0.70]]
)
P_PRESENT = np.array(
    [  # bwv, vs, pig, str, dag, rs
        [0.10, 0.85, 0.10, 0.05, 0.15, 0.10],  # BCC
        [0.05, 0.05, 0.10, 0.05, 0.55, 0.05],  # NEV
        [0.55, 0.10, 0.65, 0.55, 0.50, 0.50],  # MEL
        [0.05, 0.10, 0.15, 0.05, 0.45, 0.10],  # MISC
        [0.45, 0.10, 0.55, 0.45, 0.45, 0.40],  # SK
    ]
)

# Metadata.
AGE_MEAN = np.array([62.0, 40.0, 58.0, 46.0, 60.0])
AGE_SD = 13.0
P_MALE = np.array([0.55, 0.45, 0.55, 0.40, 0.50])
LOCATIONS = ("head_neck", "trunk", "upper_limbs", "lower_limbs", "acral")
P_LOCATION = np.array(
    [
        [0.40, 0.25, 0.15, 0.12, 0.08],
        [0.18, 0.38, 0.18, 0.18, 0.08],
        [0.18, 0.36, 0.16, 0.22, 0.08],
        [0.10, 0.22, 0.18, 0.42, 0.08],
        [0.22, 0.45, 0.15, 0.11, 0.07],
    ]
)
ELEVATIONS = ("flat", "palpable", "nodular")
P_ELEVATION = np.array(
    [[0.20, 0.40, 0.40], [0.40, 0.45, 0.15], [0.42, 0.40, 0.18], [0.35, 0.48, 0.17], [0.25, 0.55, 0.20]]
)
P_CHANGED = np.array([0.30, 0.15, 0.55, 0.20, 0.22])
META_FIELDS = ("age", "sex", "location", "elevation", "changed")
P_BLANK = 0.08  # per field, independent of everything (no leakage through blanks)

P_NO_CLINICAL = 0.08
P_NO_DERMOSCOPY = 0.08
P_SECOND_CLINICAL = 0.15  # a second photo of the same lesion (evaluation averages over photos)
P_SECOND_CASE = 0.2  # share of patients with two lesions (cases)
SPLIT_SHARES = (("train", 0.7), ("val", 0.15), ("test", 0.15))

SCHEMA = MetadataSchema(
    [
        numeric("age", AGE_BINS, description="years", value_range=AGE_RANGE),
        categorical("sex", ("female", "male")),
        categorical("location", LOCATIONS),
        categorical("elevation", ELEVATIONS),
        boolean("changed", description="the patient reports a recent change"),
    ],
    name=NAME,
)


def _tasks_json() -> list[dict[str, Any]]:
    tasks = [{"name": DIAG, "classes": list(CLASSES)}]
    tasks += [{"name": t, "classes": list(ATTRIBUTE_CLASSES[t])} for t in ATTRIBUTE_TASKS]
    return tasks


# ----------------------------------------------------------------------------------------------------
# Latent variables


@dataclass
class Latents:
    """Everything the images and metadata are drawn from, one entry per case."""

    diag: np.ndarray  # (N,) class index
    pattern: np.ndarray  # (N,) clinical micro-pattern index
    redness: np.ndarray  # (N,) float
    darkness: np.ndarray  # (N,) float
    attributes: np.ndarray  # (N, 7): pn in {0, 1, 2}, the others in {0, 1}
    age: np.ndarray  # (N,) float years
    male: np.ndarray  # (N,) bool
    location: np.ndarray  # (N,)
    elevation: np.ndarray  # (N,)
    changed: np.ndarray  # (N,) bool
    blank: np.ndarray  # (N, 5) bool, metadata field blank
    has_clinical: np.ndarray  # (N,) bool
    has_dermoscopy: np.ndarray  # (N,) bool


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of ``probs`` (N, K)."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)


def sample_latents(rng: np.random.Generator, n: int, diag: np.ndarray | None = None) -> Latents:
    y = rng.choice(len(CLASSES), size=n, p=PRIOR) if diag is None else np.asarray(diag)
    pattern = _categorical(rng, P_PATTERN[y])
    redness = rng.normal(REDNESS_MEAN[y], 1.0)
    attrs = np.zeros((n, len(ATTRIBUTE_TASKS)), dtype=np.int64)
    attrs[:, 0] = _categorical(rng, P_PN[y])
    attrs[:, 1:] = rng.random((n, len(ATTRIBUTE_TASKS) - 1)) < P_PRESENT[y]
    age = np.clip(np.round(rng.normal(AGE_MEAN[y], AGE_SD)), 5, 95)
    male = rng.random(n) < P_MALE[y]
    location = _categorical(rng, P_LOCATION[y])
    elevation = _categorical(rng, P_ELEVATION[y])
    changed = rng.random(n) < P_CHANGED[y]
    blank = rng.random((n, len(META_FIELDS))) < P_BLANK
    no_c = rng.random(n) < P_NO_CLINICAL
    no_d = (rng.random(n) < P_NO_DERMOSCOPY) & ~no_c  # every case keeps at least one image
    darkness = rng.normal(DARKNESS_MEAN[y], 1.0)  # version 3
    return Latents(
        y, pattern, redness, darkness, attrs, age, male, location, elevation, changed, blank, ~no_c, ~no_d
    )
