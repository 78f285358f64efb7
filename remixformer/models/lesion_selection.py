"""Lesion selection module (LSM, eqs. 6-9).

The global encoder's last block gives a score S over its token grid (eq. 8). In training, N cells are
drawn i.i.d. from S (attention sampling, Katharopoulos & Fleuret, ICML 2019); at inference the K_p cells
with the largest S are taken. Each cell is mapped to the full-resolution photo and a crop centred there
is cut (clamped to the borders); a 224^2 crop from an 896^2 photo covers about 3x3 cells of the 12x12
grid, the paper's "enlarged by a fixed ratio".

Gradient reaches the global encoder through the estimator: each crop's features are weighted by
S_v / stopgrad(S_v), whose value is 1 and whose gradient is dS_v / S_v. Without it the choice of cells
is not differentiable and the attention never learns where lesions are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Selection:
    crops: torch.Tensor  # B, K, 3, crop, crop: pixels of the full-resolution photo
    weights: torch.Tensor  # B, K: S_v / stopgrad(S_v) (value 1, carries the gradient to S)
    cells: torch.Tensor  # B, K: flat index of the selected cell in the score grid
    boxes: torch.Tensor  # B, K, 4: (top, left, bottom, right) of each crop in photo pixels


class LesionSelection(nn.Module):
    """Samples (training) or picks the top-K (inference) cells of a score grid and cuts crops."""

    def __init__(
        self,
        num_crops: int = 4,
        num_samples: int | None = None,
        crop_size: int = 224,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"clinical.lsm_temperature must be positive, got {temperature}")
        self.num_crops = num_crops
        self.num_samples = num_samples or num_crops
        self.crop_size = crop_size
        self.temperature = temperature

    def sampling_distribution(self, scores: torch.Tensor) -> torch.Tensor:
        """The distribution cells are drawn from in training: S, or S^(1/T) renormalised."""
        if self.temperature == 1.0:
            return scores
        return torch.softmax(torch.log(scores.clamp_min(1e-12)) / self.temperature, dim=1)

    def select_cells(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores``: (B, N) distributions -> (B, K) cell indices."""
        if self.training:
            return torch.multinomial(scores.detach().float(), self.num_samples, replacement=True)
        if self.num_crops > scores.shape[1]:
            raise ValueError(
                f"LSM: K_p = {self.num_crops} crops asked for, but the global encoder's last grid has only "
                f"{scores.shape[1]} cells; lower clinical.num_crops or raise clinical.global_size"
            )
        return scores.topk(self.num_crops, dim=1).indices

    def boxes_for(
        self, cells: torch.Tensor, grid: tuple[int, int], image_hw: tuple[int, int]
    ) -> torch.Tensor:
        """Crop boxes (B, K, 4) centred on the cells, in pixels of an image of size ``image_hw``."""
        gh, gw = grid
        H, W = image_hw
        rows = torch.div(cells, gw, rounding_mode="floor")
        cols = cells % gw
        cy = (rows.float() + 0.5) * (H / gh)
        cx = (cols.float() + 0.5) * (W / gw)
        c = self.crop_size
        top = (cy - c / 2).round().long().clamp(0, H - c)
        left = (cx - c / 2).round().long().clamp(0, W - c)
        return torch.stack([top, left, top + c, left + c], dim=-1)

    def cut(self, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) and (B, K, 4) -> (B, K, 3, c, c) by indexing (no copy of the full image)."""
        B, K = boxes.shape[:2]
        c = self.crop_size
        ar = torch.arange(c, device=images.device)
        rows = boxes[..., 0, None] + ar  # B, K, c
        cols = boxes[..., 1, None] + ar
        b = torch.arange(B, device=images.device)[:, None, None, None]
        crops = images[b, :, rows[..., :, None], cols[..., None, :]]  # B, K, c, c, 3
        return crops.permute(0, 1, 4, 2, 3)

    def forward(self, scores: torch.Tensor, grid: tuple[int, int], images: torch.Tensor) -> Selection:
        if images.shape[-1] < self.crop_size or images.shape[-2] < self.crop_size:
            raise ValueError(
                f"LSM: crops of {self.crop_size}^2 cannot be cut from a {tuple(images.shape[-2:])} photo"
            )
        dist = self.sampling_distribution(scores) if self.training else scores
        cells = self.select_cells(dist)
        picked = dist.gather(1, cells)
        weights = picked / picked.detach()
        boxes = self.boxes_for(cells, grid, images.shape[-2:])
        return Selection(self.cut(images, boxes), weights, cells, boxes)
