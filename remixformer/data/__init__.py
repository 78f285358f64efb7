"""Data: public sets in their official layouts, the manifest format, splits, transforms, synthetic set.

Entry points: :func:`load_dataset` (a :class:`DataConfig` -> :class:`CaseTable`),
:func:`remixformer.data.splits.split_indices`, :class:`remixformer.data.dataset.MultiModalDataset`
and :func:`remixformer.data.dataset.collate`. See docs/data.md.
"""

from remixformer.data.cases import Case, CaseTable
from remixformer.data.config import DataConfig
from remixformer.data.images import BadImageError, load_image
from remixformer.data.registry import load_cases, load_dataset
from remixformer.schema import MetadataField, MetadataSchema

__all__ = [
    "BadImageError",
    "Case",
    "CaseTable",
    "DataConfig",
    "MetadataField",
    "MetadataSchema",
    "load_cases",
    "load_dataset",
    "load_image",
]
