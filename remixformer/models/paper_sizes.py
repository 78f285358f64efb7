"""Parameter counts of the paper's ablation rows (Tables X, XII, XIII, XIV) beside ours.

Every row is data: the table, the row's label, the paper's #param. (None where the table gives none), the
modalities and overrides that build it from ``remixformer_paper``, and a note where the paper's number
cannot be produced or the row cannot be built yet. Models are built on PyTorch's meta device, so counting
allocates no weights. All rows are on X-SkinTumor-12: 12 classes, its metadata schema (47 one-hot slots),
2048^2 dermoscopy images unless the row says otherwise. ``remixformer models --paper`` prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import torch

from remixformer.models.registry import create_model
from remixformer.schema import MetadataSchema

CLASSES = 12
DERMOSCOPY_2048 = {"image_size": 2048}


@dataclass(frozen=True)
class PaperRow:
    table: str
    row: str
    paper: float | None  # millions of parameters in the paper; None: the table has no #param. column
    modalities: str
    overrides: dict[str, Any] | None = field(default_factory=dict)  # None: we cannot build this row yet
    count: str = "branch"  # "branch": the modality's branch only (Tables X, XII, XIII); "model": everything
    reference: str | None = None  # timm model whose size (classifier off) is shown for a row not built
    note: str = ""


_VIT_LSM = (
    "One ViT serves as G and L here, so LSM adds no parameters; the paper's +0.6M (for ViT-S/16 and ViT-B/16"
    " alike) is less than one ViT block of either (1.8M, 7.1M), so it is no own copy of G's last blocks as"
    " L has of Swin-T's stage 4."
)
_VIT_S_CSF = " The paper's CSF step (+4.7M) is the size of CSF at width 768 (Swin-T's and ViT-B/16's, 4.72M)."

ROWS: tuple[PaperRow, ...] = (
    # Table X: the clinical branch (X-SkinTumor-12)
    PaperRow(
        "X",
        "ViT-S/16",
        48.3,
        "C",
        {"lsm": False, "clinical": {"backbone": "vit_small_patch16_224"}},
        note="A ViT-S/16 at 384^2 has 21.8M; the paper's 48.3M is more than twice that and equals its"
        " Swin-T + LSM + CSF row.",
    ),
    PaperRow(
        "X",
        "ViT-S/16 + LSM",
        48.9,
        "C",
        {"csf": False, "clinical": {"backbone": "vit_small_patch16_224"}},
        note=_VIT_LSM,
    ),
    PaperRow(
        "X",
        "ViT-S/16 + LSM + CSF",
        53.6,
        "C",
        {"clinical": {"backbone": "vit_small_patch16_224"}},
        note="Ours adds CSF at ViT-S/16's width 384 (1.18M)." + _VIT_S_CSF,
    ),
    PaperRow("X", "ViT-B/16", 86.1, "C", {"lsm": False, "clinical": {"backbone": "vit_base_patch16_224"}}),
    PaperRow(
        "X",
        "ViT-B/16 + LSM",
        86.7,
        "C",
        {"csf": False, "clinical": {"backbone": "vit_base_patch16_224"}},
        note=_VIT_LSM,
    ),
    PaperRow(
        "X",
        "ViT-B/16 + LSM + CSF",
        91.4,
        "C",
        {"clinical": {"backbone": "vit_base_patch16_224"}},
        note="CSF at width 768 is 4.7M in ours as in the paper; the 0.6M left is the paper's LSM step.",
    ),
    PaperRow("X", "Swin-T", 27.9, "C", {"lsm": False}),
    PaperRow(
        "X",
        "Swin-T + LSM",
        43.6,
        "C",
        {"csf": False},
        note="L's own stage 4 with its patch merging: 15.7M.",
    ),
    PaperRow("X", "Swin-T + LSM + CSF", 48.3, "C", {}),
    # Table XII: dermoscopy backbones (single level on 384^2 unless HRWE; HRWE on 2048^2, no MSTA)
    PaperRow(
        "XII",
        "Swin-T",
        27.5,
        "D",
        {"hrwe": False, "dermoscopy": {"backbone": "swin_tiny_patch4_window7_224", "single_level_size": 384}},
    ),
    PaperRow(
        "XII",
        "Swin-B",
        89.6,
        "D",
        {"hrwe": False, "dermoscopy": {"backbone": "swin_base_patch4_window7_224", "single_level_size": 384}},
        note="Ours is timm's Swin-B without classifier (86.7M; 86.9M with 12x12 windows at 384^2); the "
        "paper's 89.6M is 2.9M more, which no Swin-B variant of timm has.",
    ),
    PaperRow(
        "XII",
        "Swin-T + HRWE",
        49.1,
        "D",
        {
            "msta": False,
            "dermoscopy": {
                **DERMOSCOPY_2048,
                "backbone": "swin_tiny_patch4_window7_224",
                "region_dim": 384,
            },
        },
        note="Swin-T per window (27.5M), its pooled 768-wide output projected to a region encoder of"
        " ViT-S/16's shape (0.3M + 21.3M).",
    ),
    PaperRow(
        "XII",
        "ViT-S/16",
        48.3,
        "D",
        {"hrwe": False, "dermoscopy": {"single_level_size": 384}},
        note="A single-level ViT-S/16 has 21.8M; the paper's 48.3M cannot be a ViT-S/16 (it is the clinical "
        "branch's count in Table X).",
    ),
    PaperRow(
        "XII",
        "ViT-B/16",
        86.1,
        "D",
        {"hrwe": False, "dermoscopy": {"single_level_size": 384, "embed_dim": 768, "num_heads": 12}},
    ),
    PaperRow("XII", "ViT-S/16 + HRWE", 43.0, "D", {"msta": False, "dermoscopy": DERMOSCOPY_2048}),
    # Table XIII: dermoscopy branch; the table gives no sizes (the weights, IN or SSL, do not change them)
    PaperRow(
        "XIII", "ViT-S/16 384^2 IN", None, "D", {"hrwe": False, "dermoscopy": {"single_level_size": 384}}
    ),
    PaperRow(
        "XIII", "ViT-S/16 512^2 IN", None, "D", {"hrwe": False, "dermoscopy": {"single_level_size": 512}}
    ),
    PaperRow(
        "XIII", "ViT-S/16 512^2 SSL", None, "D", {"hrwe": False, "dermoscopy": {"single_level_size": 512}}
    ),
    PaperRow("XIII", "ViT-S/16 2048^2 IN + HRWE", None, "D", {"msta": False, "dermoscopy": DERMOSCOPY_2048}),
    PaperRow("XIII", "ViT-S/16 2048^2 SSL + HRWE", None, "D", {"msta": False, "dermoscopy": DERMOSCOPY_2048}),
    PaperRow(
        "XIII",
        "ViT-S/16 2048^2 SSL + HRWE + MSTA",
        None,
        "D",
        {"dermoscopy": DERMOSCOPY_2048},
        note="MSTA adds 4.7M (its projection of 32 templates x 384 to 384).",
    ),
    # Table XIV: the whole model per modality subset (fusion and 12-class heads included)
    PaperRow(
        "XIV",
        "Ours-C",
        48.3,
        "C",
        {},
        count="model",
        note="Ours counts the whole model: the branch (48.3M) and the fusion's projection and heads (0.6M).",
    ),
    PaperRow(
        "XIV",
        "Ours-D",
        43.0,
        "D",
        {"dermoscopy": DERMOSCOPY_2048},
        count="model",
        note="The paper's 43.0M is its dermoscopy branch without MSTA (Table XII); with MSTA, which Table"
        " XIII uses for the full branch, it is 47.7M.",
    ),
    PaperRow(
        "XIV",
        "Ours-CM",
        59.4,
        "CM",
        {},
        count="model",
        note="The paper's CM is C + 11.1M; the metadata branch has 0.006M, so its 11.1M is fusion, more than "
        "our CMF (1.5M at width 384).",
    ),
    PaperRow(
        "XIV",
        "Ours-CD",
        76.6,
        "CD",
        {"dermoscopy": DERMOSCOPY_2048},
        count="model",
        note="No reading of the paper's own counts gives this: its C (48.3M) and D (43.0M) already sum to "
        "91.3M, more than its CD.",
    ),
    PaperRow(
        "XIV",
        "Ours-DM",
        47.8,
        "DM",
        {"dermoscopy": DERMOSCOPY_2048},
        count="model",
        note="The paper's DM is its D + 4.8M, about MSTA's 4.7M: its D row seems to leave MSTA out.",
    ),
    PaperRow(
        "XIV",
        "Ours-CDM",
        76.7,
        "CDM",
        {"dermoscopy": DERMOSCOPY_2048},
        count="model",
        note="As CD: less than the paper's own C + D (91.3M), so no sum of its branches gives it.",
    ),
)


def _metadata_dim() -> int:
    text = resources.files("remixformer.data.schemas").joinpath("xskintumor12.json").read_text()
    return MetadataSchema.from_dict(json.loads(text)).dim


def row_overrides(row: PaperRow) -> dict[str, Any]:
    """The row's overrides of ``remixformer_paper`` with X-SkinTumor-12's 2048^2 dermoscopy images."""
    kwargs = dict(row.overrides or {})
    if "D" in row.modalities:
        kwargs["dermoscopy"] = {**DERMOSCOPY_2048, **kwargs.get("dermoscopy", {})}
    return kwargs


def count_row(row: PaperRow, metadata_dim: int | None = None) -> float | None:
    """Our parameter count of ``row`` in millions (None when the row cannot be built), on the meta device."""
    if row.overrides is None:
        return None
    kwargs = row_overrides(row)
    if "M" in row.modalities:
        kwargs["metadata_dim"] = metadata_dim or _metadata_dim()
    with torch.device("meta"):
        model = create_model("remixformer_paper", row.modalities, tasks=CLASSES, **kwargs)
    prefix = f"branches.{row.modalities}" if row.count == "branch" else ""
    return model.num_parameters(prefix) / 1e6


def reference_size(name: str) -> float:
    """A timm model's size in millions with its classifier off, counted on the meta device."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, num_classes=0)
    return sum(p.numel() for p in model.parameters()) / 1e6


def paper_size_table() -> list[dict[str, Any]]:
    """One dict per row: table, row, paper, ours, reference (timm size for rows not built), note."""
    meta_dim = _metadata_dim()
    out = []
    for row in ROWS:
        ours = count_row(row, meta_dim)
        out.append(
            {
                "table": row.table,
                "row": row.row,
                "modalities": row.modalities,
                "count": row.count,
                "paper": row.paper,
                "ours": ours,
                "reference": None if row.reference is None or ours is not None else row.reference,
                "reference_size": reference_size(row.reference) if row.reference and ours is None else None,
                "note": row.note,
            }
        )
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain-text table: sizes in millions, then the notes numbered."""

    def m(x: float | None) -> str:
        return "-" if x is None else f"{x:.1f}M"

    lines = [f"{'table':5s}  {'row':34s}  {'paper':>7s}  {'ours':>7s}  {'ours-paper':>10s}  note"]
    notes = []
    for r in rows:
        diff = "-"
        if r["paper"] is not None and r["ours"] is not None:
            d = r["ours"] - r["paper"]
            diff = "0.0M" if abs(d) < 0.05 else f"{d:+.1f}M"
        ours = m(r["ours"]) if r["ours"] is not None else "n/b"
        mark = ""
        if r["note"] or r["reference"]:
            notes.append(r)
            mark = f"[{len(notes)}]"
        lines.append(f"{r['table']:5s}  {r['row']:34s}  {m(r['paper']):>7s}  {ours:>7s}  {diff:>10s}  {mark}")
    lines.append("")
    lines.append(
        "Branch only in Tables X, XII, XIII; the whole model (fusion, 12-class heads) in XIV. n/b: not built."
    )
    for i, r in enumerate(notes, 1):
        ref = f" timm {r['reference']}: {r['reference_size']:.1f}M." if r["reference"] else ""
        lines.append(f"[{i}] {r['note']}{ref}")
    return "\n".join(lines)
