"""Explanations and the paper's analysis figures (``docs/explanations.md``).

- :func:`explain_case`: one case's LSM crops and score (Fig. 7) and dermoscopy attention (Fig. 8) on
  the original images, figures and their numbers (``CaseExplanation.save``).
- :func:`permutation_importance` / :func:`importance_on_cases`: metadata field importance (Fig. 10).
- :func:`read_reader_csv` + :func:`compare_readers`: readers against the model's ROC (Fig. 11b).
- :func:`load_modality_results`: accuracy by modality subset over folds or seeds (Fig. 11a, Table XIV).
- ``maps``: the geometry (grids to pixels, boxes to the original image); ``figures``: the plots.

Figures load matplotlib lazily (``remixformer.explain.figures``).
"""

from __future__ import annotations

from remixformer.explain.case import CaseExplanation, explain_case
from remixformer.explain.importance import ImportanceResult, importance_on_cases, permutation_importance
from remixformer.explain.maps import (
    ClinicalMaps,
    DermoscopyMaps,
    cell_box,
    clinical_maps,
    dermoscopy_maps,
    scale_boxes,
    upsample_grid,
)
from remixformer.explain.modalities import ModalityComparison, load_modality_results
from remixformer.explain.readers import (
    ReaderComparison,
    ReaderFileError,
    ReaderStudy,
    compare_readers,
    read_reader_csv,
)

__all__ = [
    "CaseExplanation",
    "ClinicalMaps",
    "DermoscopyMaps",
    "ImportanceResult",
    "ModalityComparison",
    "ReaderComparison",
    "ReaderFileError",
    "ReaderStudy",
    "cell_box",
    "clinical_maps",
    "compare_readers",
    "dermoscopy_maps",
    "explain_case",
    "importance_on_cases",
    "load_modality_results",
    "permutation_importance",
    "read_reader_csv",
    "scale_boxes",
    "upsample_grid",
]
