"""Names of the entries of a batch, defined once.

A batch is a plain ``dict``. Image and metadata entries are tensors with the batch first; each modality
has a boolean presence mask of shape ``(B,)``. A missing entry means the modality is absent for every
case; a missing mask means it is present for every case that has the entry.
"""

from __future__ import annotations

CLINICAL = "clinical"  # float (B, 3, H, W), ImageNet-normalised, at the model's ``clinical_size``
DERMOSCOPY = "dermoscopy"  # float (B, 3, S, S), ImageNet-normalised, at the model's ``dermoscopy_size``
METADATA = "metadata"  # float (B, metadata_dim), one-hot with an "unknown" slot per field

MODALITY_KEYS = {"C": CLINICAL, "D": DERMOSCOPY, "M": METADATA}
MODALITY_LETTERS = {v: k for k, v in MODALITY_KEYS.items()}


def present_key(modality_key: str) -> str:
    """Key of the per-case presence mask of a modality, e.g. ``clinical_present``."""
    return f"{modality_key}_present"


CLINICAL_PRESENT = present_key(CLINICAL)
DERMOSCOPY_PRESENT = present_key(DERMOSCOPY)
METADATA_PRESENT = present_key(METADATA)

# dict task name -> tensor; single-label: long (B,), -1 = unknown; multi-label: float (B, A), NaN = unknown
TARGETS = "targets"
CASE_ID = "case_id"  # list[str]; evaluation averages the predictions of samples that share a case id
INDEX = "index"  # long (B,), row of the case in its data set

IGNORE_INDEX = -1  # single-label target value meaning "label unknown": ignored by the loss and the metrics

# Keys of the model's output dict besides the per-task logits.
LOGITS = "logits"  # dict task name -> logits (B, n_classes)
EXPLAIN = "explain"  # dict of attention maps, only when forward(..., explain=True)
AUX_LOGITS = "aux_logits"  # training only: {head name: (task logits of the present rows, row indices)}

# Keys of the explanation maps (``output[EXPLAIN]``), written by the branches and read by explain/ and
# serving/. Each map has the batch first.
LSM_SCORES = "lsm_scores"  # float (B, h, w): LSM's score of every cell of G's last grid (eqs. 6-8)
LSM_CELLS = "lsm_cells"  # long (B, K_p): the selected cells, row-major indices into the grid
LSM_BOXES = "lsm_boxes"  # long (B, K_p, 4): their crops in model-input pixels (top, left, bottom, right)
WINDOW_ATTENTION = "window_attention"  # float (B, H, W): T_phi1's class-token attention over patches
TEMPLATE_ASSIGNMENT = "template_assignment"  # long (B, H, W): MSTA's template of each patch
REGION_ATTENTION = "region_attention"  # float (B, gh, gw): R_phi2's class-token attention over windows
CMF_PREFIX = "cmf_"  # cross-modality fusion attention, one map per directed block (cmf_key)


def cmf_key(query: str, source: str) -> str:
    """Key of the CMF attention map of the block where ``query`` attends to ``source`` (``cmf_C_from_D``)."""
    return f"{CMF_PREFIX}{query}_from_{source}"
