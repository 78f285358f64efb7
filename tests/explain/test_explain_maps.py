"""Geometry of the explanation maps: grids on pixel rasters, crop boxes on the original photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from remixformer.explain.maps import (
    ClinicalMaps,
    DermoscopyMaps,
    cell_box,
    cell_of_pixels,
    clinical_maps,
    dermoscopy_maps,
    display_size,
    scale_boxes,
    upsample_grid,
)
from remixformer.models.lesion_selection import LesionSelection


@pytest.mark.parametrize("grid, size", [((2, 2), (64, 64)), ((3, 5), (90, 121)), ((12, 12), (896, 600))])
def test_upsample_keeps_the_image_geometry_and_the_sum(grid, size):
    rng = np.random.default_rng(0)
    g = rng.dirichlet(np.ones(grid[0] * grid[1])).reshape(grid)
    dens = upsample_grid(g, size, preserve_sum=True)
    assert dens.shape == size
    assert dens.sum() == pytest.approx(1.0, abs=1e-12)
    # each cell's pixels sum to the cell's value, and they lie inside the cell's box
    rows, cols = cell_of_pixels(grid[0], size[0]), cell_of_pixels(grid[1], size[1])
    for cell in range(grid[0] * grid[1]):
        r, c = divmod(cell, grid[1])
        mask = (rows == r)[:, None] & (cols == c)[None, :]
        assert dens[mask].sum() == pytest.approx(g[r, c])
        top, left, bottom, right = cell_box(cell, grid, size)
        ys, xs = np.nonzero(mask)
        assert top <= ys.min() + 0.5 and ys.max() + 0.5 <= bottom  # pixel centres inside the cell
        assert left <= xs.min() + 0.5 and xs.max() + 0.5 <= right
    shown = upsample_grid(g, size)  # display: the cell's value in each of its pixels
    assert shown.shape == size and shown.max() == pytest.approx(g.max())


def test_upsample_rejects_fewer_pixels_than_cells_when_keeping_the_sum():
    with pytest.raises(ValueError, match="fewer pixels than cells"):
        upsample_grid(np.ones((4, 4)) / 16, (3, 8), preserve_sum=True)


def test_display_size_keeps_the_aspect_ratio():
    assert display_size((3000, 4000), 1024) == (768, 1024)
    assert display_size((300, 400), 1024) == (300, 400)


@pytest.mark.parametrize(
    "image_size, grid, crop, original",
    [(896, (12, 12), 224, (1200, 1600)), (256, (4, 4), 64, (256, 300)), (64, (2, 2), 32, (90, 120))],
)
def test_crop_boxes_lie_inside_the_original_photo_and_cover_their_cell(image_size, grid, crop, original):
    lsm = LesionSelection(num_crops=grid[0] * grid[1], crop_size=crop)
    cells = torch.arange(grid[0] * grid[1])[None]
    boxes = lsm.boxes_for(cells, grid, (image_size, image_size))[0].numpy()
    maps = ClinicalMaps(np.full(grid, 1.0 / cells.numel()), cells[0].numpy(), boxes, image_size)
    H, W = original
    mapped = maps.boxes_in(original)
    cell_boxes = maps.cell_boxes_in(original)
    for (top, left, bottom, right), (ct, cl, cb, cr) in zip(mapped, cell_boxes):
        assert 0 <= top < bottom <= H and 0 <= left < right <= W
        assert top <= ct + 1e-9 and left <= cl + 1e-9 and bottom >= cb - 1e-9 and right >= cr - 1e-9
    # the crop keeps its size relative to the photo
    assert np.allclose(mapped[:, 2] - mapped[:, 0], crop * H / image_size)
    assert np.allclose(scale_boxes(boxes, (image_size, image_size), (image_size, image_size)), boxes)


def test_crop_boxes_smaller_than_a_cell_lie_inside_it():
    lsm = LesionSelection(num_crops=4, crop_size=16)
    cells = torch.arange(4)[None]
    boxes = lsm.boxes_for(cells, (2, 2), (64, 64))[0].numpy()
    for cell, (top, left, bottom, right) in enumerate(boxes):
        ct, cl, cb, cr = cell_box(cell, (2, 2), (64, 64))
        assert ct <= top and cl <= left and bottom <= cb and right <= cr


def _tiny_model(**overrides):
    from remixformer import create_model

    torch.manual_seed(0)
    return create_model("remixformer_tiny", "CD", tasks=3, **overrides).eval()


def test_model_maps_on_a_non_square_original_have_its_geometry_and_sum_as_they_should():
    model = _tiny_model(crop_size=32)
    batch = {
        "clinical": torch.randn(2, 3, 64, 64),
        "dermoscopy": torch.randn(2, 3, 64, 64),
        "dermoscopy_present": torch.tensor([True, False]),
    }
    with torch.no_grad():
        out = model(batch, explain=True)["explain"]
    case = {k: v[0] for k, v in out.items()}
    c = clinical_maps(case, 64)
    d = dermoscopy_maps(case, 64)
    photo, derm = (90, 120), (100, 75)
    assert c.pixel_scores(photo).shape == photo
    assert c.pixel_scores(photo).sum() == pytest.approx(1.0, abs=1e-6)
    for box, cell in zip(c.boxes_in(photo), c.cell_boxes_in(photo)):
        assert 0 <= box[0] < box[2] <= photo[0] and 0 <= box[1] < box[3] <= photo[1]
        assert box[0] <= cell[0] and box[1] <= cell[1] and box[2] >= cell[2] and box[3] >= cell[3]
    assert d.grid == (2, 2) and d.patches_per_window == (4, 4)
    assert d.region.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(d.window_sums(), 1.0, atol=1e-5)
    assert d.combined.sum() == pytest.approx(1.0, abs=1e-5)
    for name in ("region_pixels", "window_pixels", "combined_pixels"):
        raster = getattr(d, name)(derm, preserve_sum=True)
        assert raster.shape == derm
    assert d.region_pixels(derm, preserve_sum=True).sum() == pytest.approx(1.0, abs=1e-5)
    assert d.combined_pixels(derm, preserve_sum=True).sum() == pytest.approx(1.0, abs=1e-5)
    # the window attention keeps a sum of 1 inside each window on the pixel raster too
    wp = d.window_pixels(derm, preserve_sum=True)
    rows, cols = cell_of_pixels(2, derm[0]), cell_of_pixels(2, derm[1])
    for r in range(2):
        for col in range(2):
            assert wp[np.ix_(rows == r, cols == col)].sum() == pytest.approx(1.0, abs=1e-5)
    assert d.template_pixels(derm).shape == derm and d.templates.min() >= 0
    # the second case has no dermoscopy image: its maps are NaN and no figure is made
    assert dermoscopy_maps({k: v[1] for k, v in out.items()}, 64) is None


def test_single_level_dermoscopy_is_one_window():
    model = _tiny_model(hrwe=False)
    with torch.no_grad():
        out = model({"dermoscopy": torch.randn(1, 3, 64, 64)}, explain=True)["explain"]
    d = dermoscopy_maps({k: v[0] for k, v in out.items()}, 64)
    assert d.region is None and d.grid == (1, 1)
    assert d.combined.sum() == pytest.approx(1.0, abs=1e-5)
    assert clinical_maps({k: v[0] for k, v in out.items()}, 64) is None  # the clinical photo is absent


def test_dermoscopy_maps_reject_a_grid_that_does_not_split_into_windows():
    with pytest.raises(ValueError, match="does not split"):
        DermoscopyMaps(np.ones((5, 5)), np.ones((2, 2)) / 4, None, 64)
