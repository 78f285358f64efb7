"""Image discovery, window planning (native crops, tiles, large images, background filter), the index
file and the data set's per-(seed, epoch, index) views."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from remixformer.pretrain.augment import MultiCrop
from remixformer.pretrain.config import resolve_sizes
from remixformer.pretrain.windows import (
    NATIVE,
    WindowDataset,
    WindowIndex,
    build_index,
    discover_images,
    make_loader,
    plan_image,
)


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def test_discovery_is_recursive_sorted_and_filters_extensions(image_dir):
    files = discover_images([image_dir], [".jpg", ".png"])
    assert len(files) == 13  # 12 images + broken.jpg; notes.txt is not an image extension
    assert files == sorted(files) and all(f.is_absolute() for f in files)
    assert any("deeper" in str(f) for f in files)
    assert len(discover_images([image_dir, image_dir / "part0"], ["JPG", ".png"])) == 13  # no duplicates
    with pytest.raises(ValueError, match="image folder not found"):
        discover_images([image_dir / "nope"], [".png"])
    with pytest.raises(ValueError, match="no image folders"):
        discover_images([], [".png"])


def test_index_counts_tiles_and_reports_unreadable_files(image_dir, tiny_cfg, caplog):
    cfg = resolve_sizes(tiny_cfg(windows={"images": [str(image_dir)]}))
    assert (cfg.windows.window_size, cfg.windows.resize_size, cfg.windows.large_resize_size) == (32, 64, 128)
    with caplog.at_level("WARNING"):
        index = build_index(cfg.windows, seed=0)
    assert index.info["files_found"] == 13 and index.info["unreadable"] == 1
    assert "broken.jpg" in index.info["unreadable_files"][0]["path"]
    assert "1 of 13 files could not be read" in caplog.text
    assert len(index) == 12 * 4 and index.info["tile_windows"] == 48  # 64^2 resize / 32^2 windows
    assert set(index.resize.tolist()) == {64}


def test_background_and_vignette_windows_are_filtered(tmp_path, tiny_cfg):
    img = np.full((64, 64, 3), 150)
    img[:, :32] = 0  # left half black (vignette / padding)
    half = _save(tmp_path / "half.png", img)
    black = _save(tmp_path / "black.png", np.zeros((64, 64, 3)))
    white = _save(tmp_path / "white.png", np.full((64, 64, 3), 255))
    w = resolve_sizes(tiny_cfg()).windows
    plan = plan_image(half, w)
    assert sorted(plan.positions) == [(32, 0), (32, 32)] and plan.filtered == 2
    assert plan_image(black, w).positions == [] and plan_image(white, w).filtered == 4
    keep_all = resolve_sizes(tiny_cfg(windows={"max_background_fraction": 1.0})).windows
    assert len(plan_image(black, keep_all).positions) == 4
    only_black = tmp_path / "only_black"
    _save(only_black / "black.png", np.zeros((64, 64, 3)))
    with pytest.raises(ValueError, match="no windows: 1 files found, 0 unreadable, 4 windows left out"):
        build_index(resolve_sizes(tiny_cfg(windows={"images": [str(only_black)]})).windows)


def test_large_images_are_tiled_at_the_large_size(tmp_path, tiny_cfg):
    big = _save(tmp_path / "big.png", np.random.default_rng(0).integers(60, 200, (160, 130, 3)))
    w = resolve_sizes(tiny_cfg(windows={"large_min_side": 128})).windows
    plan = plan_image(big, w)
    assert plan.resize == 128 and len(plan.positions) == 16  # 128^2 / 32^2
    small = resolve_sizes(tiny_cfg(windows={"large_min_side": 200})).windows
    assert plan_image(big, small).resize == 64


def test_native_crops_are_at_native_resolution_and_deterministic(tmp_path, tiny_cfg):
    rng = np.random.default_rng(1)
    path = _save(tmp_path / "a.png", rng.integers(60, 200, (70, 90, 3)))
    w = resolve_sizes(tiny_cfg(windows={"native_fraction": 1.0, "native_crops_per_image": 5})).windows
    plan = plan_image(path, w, seed=0)
    assert plan.kind == NATIVE and plan.resize == 0 and len(plan.positions) == 5
    assert all(0 <= x <= 90 - 32 and 0 <= y <= 70 - 32 for x, y in plan.positions)
    assert plan_image(path, w, seed=0).positions == plan.positions
    assert plan_image(path, w, seed=1).positions != plan.positions
    tiny_img = _save(tmp_path / "t.png", rng.integers(60, 200, (20, 20, 3)))
    assert plan_image(tiny_img, w).kind != NATIVE  # smaller than a window: tiles of the resized image


def test_index_csv_round_trip(image_dir, tiny_cfg, tmp_path):
    cfg = resolve_sizes(tiny_cfg(windows={"images": [str(image_dir)], "native_fraction": 0.5}))
    index = build_index(cfg.windows, seed=3)
    index.to_csv(tmp_path / "windows.csv")
    back = WindowIndex.from_csv(tmp_path / "windows.csv")
    assert len(back) == len(index) and back.window_size == 32
    assert [back.window(i) for i in range(len(back))] == [index.window(i) for i in range(len(index))]
    assert 0 < index.info["native_windows"] < len(index)


def test_views_depend_only_on_seed_epoch_and_index(image_dir, tiny_cfg):
    cfg = resolve_sizes(tiny_cfg(windows={"images": [str(image_dir)]}))
    ds = WindowDataset(build_index(cfg.windows), MultiCrop(cfg.crops), seed=0)
    item = ds[3]
    assert item["global"].shape == (2, 3, 32, 32) and item["local"].shape == (2, 3, 16, 16)
    assert item["global"].dtype == torch.float32
    torch.manual_seed(123)  # the global generator does not matter
    again = ds[3]
    torch.testing.assert_close(again["global"], item["global"])
    torch.testing.assert_close(again["local"], item["local"])
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["global"], item["global"])
    loader = make_loader(ds, 8, seed=0)
    batch = next(iter(loader))
    assert batch["global"].shape == (8, 2, 3, 32, 32) and batch["local"].shape == (8, 2, 3, 16, 16)
    assert len(loader) == len(ds) // 8  # incomplete batches dropped
    with pytest.raises(ValueError, match="lower optim.batch_size"):
        make_loader(ds, 1000, seed=0)


def test_draws_do_not_depend_on_where_the_archive_lies(image_dir, tiny_cfg, tmp_path):
    moved = shutil.copytree(image_dir, tmp_path / "moved")
    (moved / "part0" / "loop").symlink_to(moved, target_is_directory=True)  # followed once, no cycle
    a = build_index(
        resolve_sizes(tiny_cfg(windows={"images": [str(image_dir)], "native_fraction": 0.5})).windows
    )
    b = build_index(resolve_sizes(tiny_cfg(windows={"images": [str(moved)], "native_fraction": 0.5})).windows)
    assert len(a) == len(b) and a.info["native_windows"] == b.info["native_windows"] > 0
    assert [a.window(i)[1:] for i in range(len(a))] == [b.window(i)[1:] for i in range(len(b))]


def test_an_image_unreadable_after_indexing_gives_the_next_window(tmp_path, tiny_cfg, caplog):
    rng = np.random.default_rng(2)
    for name in ("a.png", "b.png"):
        _save(tmp_path / "imgs" / name, rng.integers(60, 200, (64, 64, 3)))
    cfg = resolve_sizes(tiny_cfg(windows={"images": [str(tmp_path / "imgs")]}))
    ds = WindowDataset(build_index(cfg.windows), MultiCrop(cfg.crops))
    (tmp_path / "imgs" / "a.png").unlink()
    with caplog.at_level("WARNING"):
        item = ds[0]
    assert item["global"].shape == (2, 3, 32, 32) and "a.png" in caplog.text
