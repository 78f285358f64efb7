"""Does the lesion selection module find the lesion? Its hit rate on photos whose lesion position is known.

The synthetic set records where the lesion is in every photo (``latents.csv``); a photo is a *hit* when
the lesion's centre lies inside one of the K_p crops the LSM selects at inference (the top-K cells of
its score), a *top-1 hit* when it lies inside the crop of the highest-scoring cell. Chance levels are
those of K_p (or 1) cells drawn uniformly: K_p / cells and 1 / cells for crops of one cell each (the
small preset: 64^2 crops on a 4 x 4 grid of a 256^2 photo). The mean LSM score of the lesion's cell,
against 1 / cells for a flat score, says how concentrated the attention is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from remixformer import keys
from remixformer.data.cases import CaseTable
from remixformer.data.images import load_image
from remixformer.data.transforms import build_image_transform

log = logging.getLogger(__name__)

Lesion = tuple[float, float, float, int]  # centre x, centre y, radius, photo side (pixels of the photo)


def centre_in_boxes(boxes: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """Which boxes (K, 4: top, left, bottom, right) contain the point (cx, cy)."""
    b = np.asarray(boxes, dtype=np.float64)
    return (b[:, 0] <= cy) & (cy < b[:, 2]) & (b[:, 1] <= cx) & (cx < b[:, 3])


@torch.no_grad()
def lsm_hit_rate(
    model: torch.nn.Module,
    table: CaseTable,
    indices: Sequence[int],
    lesions: Mapping[str, Lesion],
    batch_size: int = 32,
) -> dict[str, Any]:
    """LSM hits on the clinical photos of ``indices`` whose lesion position ``lesions`` knows
    (``synthetic.read_lesions``). Returns rates, chance levels and one row per photo."""
    branch = model.branches["C"] if "C" in getattr(model, "branches", {}) else None
    if branch is None or getattr(branch, "lesion_selection", None) is None:
        raise ValueError("the model has no clinical branch with lesion selection (LSM)")
    size = branch.cfg.image_size
    transform = build_image_transform(size, train=False)
    photos = []
    for i in indices:
        for path in table.cases[i].images("C"):
            key = str(Path(path).resolve())
            if key in lesions:
                photos.append((table.cases[i].case_id, key))
    if not photos:
        raise ValueError("none of these cases' photos has a known lesion position")
    was_training = model.training
    model.eval()
    rows = []
    try:
        for start in range(0, len(photos), batch_size):
            chunk = photos[start : start + batch_size]
            x = torch.stack([transform(load_image(p)) for _, p in chunk])
            maps = branch(x, explain=True).maps
            boxes = maps[keys.LSM_BOXES].cpu().numpy()
            scores = maps[keys.LSM_SCORES].cpu().numpy()
            for (case_id, path), b, s in zip(chunk, boxes, scores):
                cx, cy, r, side = lesions[path]
                f = size / side
                inside = centre_in_boxes(b, cx * f, cy * f)
                gh, gw = s.shape
                cell = int(min(gh - 1, cy * f * gh // size)) * gw + int(min(gw - 1, cx * f * gw // size))
                rows.append(
                    {
                        "case_id": case_id,
                        "photo": path,
                        "hit": bool(inside.any()),
                        "top1_hit": bool(inside[0]),
                        "lesion_cell": cell,
                        "lesion_cell_score": float(s.reshape(-1)[cell]),
                        "score_max": float(s.max()),
                        "score_min": float(s.min()),
                    }
                )
    finally:
        model.train(was_training)
    cells = int(np.prod(scores.shape[1:]))
    k = int(boxes.shape[1])
    return {
        "photos": len(rows),
        "hit_rate": float(np.mean([r["hit"] for r in rows])),
        "top1_hit_rate": float(np.mean([r["top1_hit"] for r in rows])),
        "chance": min(1.0, k / cells),
        "top1_chance": 1.0 / cells,
        "mean_lesion_cell_score": float(np.mean([r["lesion_cell_score"] for r in rows])),
        "flat_score": 1.0 / cells,
        "crops": k,
        "cells": cells,
        "rows": rows,
    }
