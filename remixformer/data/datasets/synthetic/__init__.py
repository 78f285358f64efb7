"""A synthetic multi-modal skin-lesion data set in the manifest format: the project's embedded default.

Designed as a fair small test of the paper's ideas (docs/synthetic.md has the design and the measured
difficulty). Five diagnoses, each seen through three partial views:

- **clinical photo** (256^2): skin tone, lighting gradient, hair, distractor spots of random colours and
  the lesion (radius 30-42 px) at a random place. Its *colour* (darkness, redness) carries the class at
  the lesion's scale, visible in the shrunk global view (version 3). Its *micro-pattern* (smooth /
  grain / points) is a zero-sum texture on the 2x2 pixel grid: a 2x downsampled copy of the photo
  loses it, a full-resolution crop on the lesion shows it (what the LSM zoom is for).
- **dermoscopy image** (256^2): seven checklist-like attributes drawn as 1-px structures (network,
  dots/globules, streaks, veil speckle, vessels, regression peppering, pigment speckle) and high-pass
  filtered, so that shrinking the image to 64^2 erases them (what high-resolution windows are for).
- **metadata**: age, sex, location, elevation, changed, with class-dependent distributions and 8 %
  blanks per field.

The clinical pattern separates {NEV, MEL} / {MISC, SK} / {BCC}; the dermoscopy attributes separate
{NEV, MISC} / {MEL, SK} / {BCC}; metadata shifts the odds. No single view identifies the class.
Generation is deterministic for a seed (byte-identical files) and independent per case.

Modules: ``design`` (classes, P(view | class), schema, latent variables), ``drawing`` (image helpers),
``clinical`` and ``dermoscopy`` (the renderers), ``writer`` (generate, load, read_lesions) and
``difficulty`` (Bayes-optimal accuracy). Everything is importable from here, as it was from the single
module this package replaced.
"""

from remixformer.data.datasets.synthetic.clinical import (
    _micro_texture,
    lesion_colour,
    render_clinical,
)
from remixformer.data.datasets.synthetic.dermoscopy import (
    HIGHPASS_CUTOFF,
    render_dermoscopy,
)
from remixformer.data.datasets.synthetic.design import (
    AGE_MEAN,
    AGE_SD,
    ATTRIBUTE_CLASSES,
    ATTRIBUTE_TASKS,
    CLASSES,
    DARKNESS_MEAN,
    ELEVATIONS,
    LESION_RADIUS,
    LOCATIONS,
    META_FIELDS,
    NAME,
    P_BLANK,
    P_CHANGED,
    P_ELEVATION,
    P_LOCATION,
    P_MALE,
    P_NO_CLINICAL,
    P_NO_DERMOSCOPY,
    P_PATTERN,
    P_PN,
    P_PRESENT,
    P_SECOND_CASE,
    P_SECOND_CLINICAL,
    PATTERNS,
    PRIOR,
    REDNESS_MEAN,
    SCHEMA,
    SPLIT_SHARES,
    VERSION,
    Latents,
    sample_latents,
)
from remixformer.data.datasets.synthetic.difficulty import (
    bayes_accuracy,
)
from remixformer.data.datasets.synthetic.drawing import (
    _highpass,
)
from remixformer.data.datasets.synthetic.writer import (
    generate,
    load,
    read_lesions,
    set_identity,
    stored_identity,
)

__all__ = [
    "AGE_MEAN",
    "AGE_SD",
    "ATTRIBUTE_CLASSES",
    "ATTRIBUTE_TASKS",
    "CLASSES",
    "ELEVATIONS",
    "HIGHPASS_CUTOFF",
    "LESION_RADIUS",
    "LOCATIONS",
    "Latents",
    "META_FIELDS",
    "NAME",
    "PATTERNS",
    "PRIOR",
    "P_BLANK",
    "P_CHANGED",
    "P_ELEVATION",
    "P_LOCATION",
    "P_MALE",
    "P_NO_CLINICAL",
    "P_NO_DERMOSCOPY",
    "P_PATTERN",
    "P_PN",
    "P_PRESENT",
    "P_SECOND_CASE",
    "P_SECOND_CLINICAL",
    "DARKNESS_MEAN",
    "REDNESS_MEAN",
    "SCHEMA",
    "SPLIT_SHARES",
    "VERSION",
    "_highpass",
    "_micro_texture",
    "bayes_accuracy",
    "generate",
    "load",
    "read_lesions",
    "set_identity",
    "stored_identity",
    "lesion_colour",
    "render_clinical",
    "render_dermoscopy",
    "sample_latents",
]
