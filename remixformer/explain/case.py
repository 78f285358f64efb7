"""One case explained: the prediction, its maps on the original images, the figures and their numbers.

predictor = Predictor.from_checkpoint("best.safetensors")
exp = explain_case(predictor, clinical="photo.jpg", dermoscopy="derm.png", metadata={"sex": "male"})
exp.clinical.boxes_in(exp.clinical_size)   # crops in pixels of the original photo
exp.save("out/")                           # PNG figures + CSV/JSON numbers
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from remixformer import keys
from remixformer.data.images import to_pil
from remixformer.evaluation.plots import save_figure
from remixformer.evaluation.report import to_jsonable
from remixformer.explain import figures as F
from remixformer.explain.lsm import centre_in_boxes
from remixformer.explain.maps import ClinicalMaps, DermoscopyMaps, clinical_maps, dermoscopy_maps

log = logging.getLogger(__name__)


@dataclass
class CaseExplanation:
    """``prediction``: the :class:`~remixformer.serving.predictor.CasePrediction`; images as given
    (RGB, EXIF orientation applied); maps None where the case or the model lacks the modality."""

    prediction: Any
    clinical_image: Image.Image | None
    dermoscopy_image: Image.Image | None
    clinical: ClinicalMaps | None
    dermoscopy: DermoscopyMaps | None
    checkpoint: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # where the lesion is, when known (a synthetic set's photo): centre x, centre y, radius in photo pixels
    lesion: tuple[float, float, float] | None = None

    def lesion_in_crops(self) -> np.ndarray | None:
        """Per selected crop (best first): does it contain the lesion's centre? None when unknown."""
        if self.lesion is None or self.clinical is None:
            return None

        return centre_in_boxes(self.clinical.boxes_in(self.clinical_size), self.lesion[0], self.lesion[1])

    @property
    def clinical_size(self) -> tuple[int, int] | None:
        im = self.clinical_image
        return None if im is None else (im.height, im.width)

    @property
    def dermoscopy_size(self) -> tuple[int, int] | None:
        im = self.dermoscopy_image
        return None if im is None else (im.height, im.width)

    def figures(self, *, templates: bool = True, max_side: int | None = None) -> dict[str, Any]:
        """``{file name: Figure}`` of the branches this case has maps for."""
        side = max_side or F.MAX_SIDE
        diag = f"{self.prediction.diagnosis} ({self.prediction.top_k[0][1]:.2f})"
        out = {}
        if self.clinical is not None:
            out["clinical_lsm.png"] = F.plot_clinical(
                self.clinical_image,
                self.clinical,
                max_side=side,
                title=f"Clinical branch: lesion selection (LSM); prediction {diag}",
            )
        if self.dermoscopy is not None:
            out["dermoscopy_attention.png"] = F.plot_dermoscopy(
                self.dermoscopy_image,
                self.dermoscopy,
                templates=templates,
                max_side=side,
                title=f"Dermoscopy branch: region- and window-level attention; prediction {diag}",
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Every number of the figures (grid-level maps, boxes in original and model pixels)."""
        d: dict[str, Any] = {
            "prediction": self.prediction.to_dict(),
            "checkpoint": self.checkpoint,
            "notes": self.notes,
        }
        c = self.clinical
        if c is not None:
            d["clinical"] = {
                "image_size": list(self.clinical_size),
                "model_input_size": c.input_size,
                "lsm_grid": list(c.grid),
                keys.LSM_SCORES: c.scores,
                "selected_cells": c.cells,
                "crop_boxes": c.boxes_in(self.clinical_size),
                "crop_boxes_model_pixels": c.boxes,
                "box_format": "top, left, bottom, right",
            }
            inside = self.lesion_in_crops()
            if inside is not None:
                d["clinical"]["lesion"] = {
                    "centre_x": self.lesion[0],
                    "centre_y": self.lesion[1],
                    "radius": self.lesion[2],
                    "crops_containing_centre": inside,
                    "lsm_hit": bool(inside.any()),
                }
        m = self.dermoscopy
        if m is not None:
            d["dermoscopy"] = {
                "image_size": list(self.dermoscopy_size),
                "model_input_size": m.input_size,
                "window_grid": list(m.grid),
                "patches_per_window": list(m.patches_per_window),
                keys.REGION_ATTENTION: m.region,
                keys.WINDOW_ATTENTION: m.window,
                "combined_attention": m.combined,
                keys.TEMPLATE_ASSIGNMENT: m.templates,
            }
        cmf = {
            k: np.asarray(v) for k, v in self.prediction.explanation.items() if k.startswith(keys.CMF_PREFIX)
        }
        if cmf:
            d["cmf_attention"] = cmf
        return to_jsonable(d)

    def save(
        self,
        out_dir: str | os.PathLike[str],
        *,
        templates: bool = True,
        max_side: int | None = None,
        dpi: int = 150,
    ) -> dict[str, Path]:
        """Write the figures (PNG) and their numbers: ``prediction.json``, ``explanation.json``,
        ``clinical_lsm_grid.csv``, ``clinical_boxes.csv``, ``dermoscopy_region.csv``,
        ``dermoscopy_patches.csv``. Returns ``{file name: path}``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, fig in self.figures(templates=templates, max_side=max_side).items():
            written[name] = save_figure(fig, out / name, dpi=dpi)
        if self.clinical is not None:
            written.update(_clinical_csvs(out, self.clinical, self.clinical_size, self.lesion_in_crops()))
        if self.dermoscopy is not None:
            written.update(_dermoscopy_csvs(out, self.dermoscopy))
        path = out / "explanation.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        written["explanation.json"] = path
        path = out / "prediction.json"
        payload = {
            **self.prediction.to_dict(),
            "checkpoint": self.checkpoint,
            "notes": self.notes,
            "files": sorted([*written, "prediction.json"]),
        }
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        written["prediction.json"] = path
        return written


def _num(v: float) -> str:
    return "" if np.isnan(v) else repr(float(v))


def _write_rows(path: Path, header: list[str], rows: Iterable[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _clinical_csvs(
    out: Path, c: ClinicalMaps, size: tuple[int, int], lesion_inside: np.ndarray | None = None
) -> dict[str, Path]:
    rank = {int(cell): k + 1 for k, cell in enumerate(c.cells)}
    gh, gw = c.grid
    grid = _write_rows(
        out / "clinical_lsm_grid.csv",
        ["row", "col", "cell", "score", "selected_rank"],
        (
            [r, col, r * gw + col, _num(c.scores[r, col]), rank.get(r * gw + col, "")]
            for r in range(gh)
            for col in range(gw)
        ),
    )
    boxes, model_boxes = c.boxes_in(size), c.boxes
    corners = ["top", "left", "bottom", "right"]
    cells = [(k, int(cell), *divmod(int(cell), gw)) for k, cell in enumerate(c.cells)]
    crops = _write_rows(
        out / "clinical_boxes.csv",
        ["rank", "cell", "row", "col", "score", *corners, *(f"model_{x}" for x in corners)]
        + (["contains_lesion_centre"] if lesion_inside is not None else []),
        (
            [
                k + 1,
                cell,
                r,
                col,
                _num(c.scores[r, col]),
                *(_num(v) for v in boxes[k]),
                *(int(v) for v in model_boxes[k]),
                *([int(lesion_inside[k])] if lesion_inside is not None else []),
            ]
            for k, cell, r, col in cells
        ),
    )
    return {grid.name: grid, crops.name: crops}


def _dermoscopy_csvs(out: Path, m: DermoscopyMaps) -> dict[str, Path]:
    written = {}
    gh, gw = m.grid
    ph, pw = m.patches_per_window
    if m.region is not None:
        path = _write_rows(
            out / "dermoscopy_region.csv",
            ["window_row", "window_col", "window", "region_attention"],
            ([r, col, r * gw + col, _num(m.region[r, col])] for r in range(gh) for col in range(gw)),
        )
        written[path.name] = path
    combined = m.combined
    n_rows, n_cols = m.window.shape  # patches over the whole image
    path = _write_rows(
        out / "dermoscopy_patches.csv",
        ["patch_row", "patch_col", "window_row", "window_col"]
        + ["window_attention", "region_x_window", "template"],
        (
            [
                r,
                col,
                r // ph,
                col // pw,
                _num(m.window[r, col]),
                _num(combined[r, col]),
                "" if m.templates is None else int(m.templates[r, col]),
            ]
            for r in range(n_rows)
            for col in range(n_cols)
        ),
    )
    written[path.name] = path
    return written


def explain_case(
    predictor: Any,
    clinical: Any = None,
    dermoscopy: Any = None,
    metadata: dict[str, Any] | None = None,
    *,
    top_k: int = 3,
) -> CaseExplanation:
    """Predict one case with ``explain=True`` and bring the maps to the original images' geometry.

    ``clinical``/``dermoscopy``: anything :class:`~remixformer.serving.predictor.Predictor` accepts
    (path, bytes, PIL image, array) or None. A branch without maps (absent input, or a model without
    that branch or without LSM) gets None and a note.
    """
    images = {}
    for key, given in (("clinical", clinical), ("dermoscopy", dermoscopy)):
        images[key] = None if given is None else to_pil(given, key, predictor.max_image_pixels)
    pred = predictor.predict(
        clinical=images["clinical"],
        dermoscopy=images["dermoscopy"],
        metadata=metadata,
        top_k=top_k,
        explain=True,
    )
    sizes = predictor.input_sizes
    notes = []
    c_maps = d_maps = None
    if "C" in predictor.modalities:
        if images["clinical"] is None:
            notes.append("no clinical photo: the LSM figure (Fig. 7) is skipped")
        else:
            c_maps = clinical_maps(pred.explanation, sizes["clinical"])
            if c_maps is None:
                notes.append("the model has no LSM: no lesion-selection maps")
    if "D" in predictor.modalities:
        if images["dermoscopy"] is None:
            notes.append("no dermoscopy image: the attention figure (Fig. 8) is skipped")
        else:
            d_maps = dermoscopy_maps(pred.explanation, sizes["dermoscopy"])
    for n in notes:
        log.info("explain: %s", n)
    return CaseExplanation(
        prediction=pred,
        clinical_image=images["clinical"],
        dermoscopy_image=images["dermoscopy"],
        clinical=c_maps,
        dermoscopy=d_maps,
        checkpoint=dict(getattr(predictor, "identity", {}) or {}),
        notes=notes,
    )
