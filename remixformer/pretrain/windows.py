"""Windows for self-supervised pretraining, drawn as the paper does (section IV-B).

Every image found (recursively, labels not needed) is read once to build the *window index*:

- a share ``native_fraction`` of the images (chosen by a hash of the path and the seed) gives
  ``native_crops_per_image`` random ``w x w`` crops at native resolution (positions drawn once);
- the others are resized to ``resize_size``^2 (1024^2; ``large_resize_size``^2 = 2048^2 when the
  shorter side is at least ``large_min_side``) and cut into non-overlapping ``w x w`` tiles.

A window whose share of background pixels (luminance below ``dark_threshold``: the dermatoscope's black
vignette, black padding; above ``bright_threshold``: white padding, glare) exceeds
``max_background_fraction`` is left out (native crops are redrawn a few times first). Unreadable files are
reported and skipped with a count. The index is a fixed list of windows, like the paper's 2M-image set;
randomness per epoch comes from the multi-crop views, a function of (seed, epoch, index).
"""

from __future__ import annotations

import csv
import logging
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from remixformer.data.images import BadImageError, load_image
from remixformer.data.registry import load_dataset
from remixformer.data.sampling import EpochIndexed, EpochSampler
from remixformer.data.splits import splits_from_config
from remixformer.pretrain.augment import MultiCrop
from remixformer.pretrain.config import WindowsConfig
from remixformer.serialization import atomic_write

log = logging.getLogger(__name__)

NATIVE, TILE = "native", "tile"
MAX_DRAWS_PER_CROP = 8  # native crops: positions tried per wanted window before giving up


def find_images(folders: Sequence[str | os.PathLike], extensions: Sequence[str]) -> dict[Path, str]:
    """Image files under ``folders`` (recursively, case-insensitive extensions, symbolic links followed
    once) -> their path relative to the folder they were found in (the key of their random draws, so
    the draws do not depend on where the archive lies)."""
    if not folders:
        raise ValueError("no image folders given (--images DIR [DIR ...] or windows.images in the config)")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found: dict[Path, str] = {}
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise ValueError(f"image folder not found: {root}")
        seen: set[str] = set()
        for dirpath, dirnames, names in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:  # a link back up the tree
                dirnames[:] = []
                continue
            seen.add(real)
            for n in names:
                if Path(n).suffix.lower() in exts and not n.startswith("."):
                    path = Path(dirpath, n)
                    found.setdefault(path.resolve(), path.relative_to(root).as_posix())
    return found


def dataset_images(data_cfg: Any, splits: Sequence[str], modality: str) -> tuple[dict[Path, str], dict]:
    """The ``modality`` images (``C`` or ``D``) of a data set's cases in ``splits``, split as a training
    run with the same data section splits it (protocol, fold, validation share, seed): the images of its
    test cases are never among them. Returns path -> key (relative to the data root) and a description
    for the run's ``data.json`` and the export header."""
    if "test" in splits:
        raise ValueError("data_splits may not include test: pretraining would see the test images")
    table = load_dataset(data_cfg)
    parts = splits_from_config(table, data_cfg)
    root = Path(table.root or data_cfg.root).resolve()
    found: dict[Path, str] = {}
    cases = 0
    for split in splits:
        for i in parts.get(split, []):
            paths = table.cases[i].images(modality)
            cases += bool(paths)
            for p in paths:
                path = Path(p).resolve()
                try:
                    key = path.relative_to(root).as_posix()
                except ValueError:
                    key = path.as_posix()
                found.setdefault(path, key)
    test_images = {Path(p).resolve() for i in parts.get("test", []) for p in table.cases[i].images(modality)}
    overlap = test_images & set(found)
    if overlap:  # a test case sharing an image file with a training case (a data set defect)
        raise ValueError(
            f"{table.name}: {len(overlap)} image(s) belong to both test and {'/'.join(splits)} cases "
            f"(e.g. {sorted(overlap)[0]}); fix the data set's groups before pretraining on it"
        )
    info = {
        "dataset": table.name,
        "root": str(root),
        "protocol": data_cfg.protocol,
        "n_folds": data_cfg.n_folds,
        "fold": data_cfg.fold,
        "val_fraction": data_cfg.val_fraction,
        "seed": data_cfg.seed,
        "splits": list(splits),
        "modality": modality,
        "cases": cases,
        "images": len(found),
        "test_cases_excluded": len(parts.get("test", [])),
    }
    if not found:
        raise ValueError(f"{table.name}: no {modality} images in the {'/'.join(splits)} cases")
    return found, info


def discover_images(folders: Sequence[str | os.PathLike], extensions: Sequence[str]) -> list[Path]:
    """Image files under ``folders`` (recursively, sorted, absolute, no duplicates)."""
    return sorted(find_images(folders, extensions))


def background_mask(img: Image.Image, factor: int, dark: int, bright: int) -> np.ndarray:
    """Boolean map of background at 1/``factor`` scale (box-averaged luminance out of [dark, bright])."""
    lum = img.convert("L")
    if factor > 1:
        lum = lum.reduce(factor)
    a = np.asarray(lum)
    return (a < dark) | (a > bright)


def _background_fraction(mask: np.ndarray, factor: int, left: int, top: int, size: int) -> float:
    r0, c0 = top // factor, left // factor
    r1, c1 = max(r0 + 1, (top + size) // factor), max(c0 + 1, (left + size) // factor)
    return float(mask[r0:r1, c0:c1].mean())


@dataclass
class ImagePlan:
    """The windows of one image (or why it has none)."""

    path: str
    kind: str = TILE
    resize: int = 0  # side of the resized square for tiles; 0 for native crops
    positions: list[tuple[int, int]] = field(default_factory=list)  # (left, top) of each kept window
    filtered: int = 0  # windows left out as background
    error: str | None = None


def plan_image(path: str | Path, cfg: WindowsConfig, seed: int = 0, key: str | None = None) -> ImagePlan:
    """Read one image and decide its windows (``cfg`` with resolved sizes). ``key`` names the image in
    its random draws (default: the path)."""
    w = int(cfg.window_size)
    plan = ImagePlan(str(path))
    try:
        img = load_image(path, max_pixels=cfg.max_image_pixels)
    except BadImageError as e:
        plan.error = e.reason
        return plan
    W, H = img.size
    rng = np.random.default_rng(zlib.crc32(f"{seed}:{key or path}".encode()))
    factor = max(1, w // 16)  # the mask holds at least 16 x 16 values per window
    check = cfg.max_background_fraction < 1.0
    if rng.random() < cfg.native_fraction and min(W, H) >= w and cfg.native_crops_per_image > 0:
        plan.kind = NATIVE
        mask = background_mask(img, factor, cfg.dark_threshold, cfg.bright_threshold) if check else None
        draws = 0
        while (
            len(plan.positions) < cfg.native_crops_per_image
            and draws < MAX_DRAWS_PER_CROP * cfg.native_crops_per_image
        ):
            draws += 1
            left, top = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - w + 1))
            if (
                mask is not None
                and _background_fraction(mask, factor, left, top, w) > cfg.max_background_fraction
            ):
                plan.filtered += 1
                continue
            plan.positions.append((left, top))
        return plan
    large = min(W, H) >= int(cfg.large_min_side)
    S = int(cfg.large_resize_size if large else cfg.resize_size)
    plan.resize = S
    mask = None
    if check:  # the mask of the resized image, at 1/factor scale
        small = img.resize((S // factor, S // factor), Image.Resampling.BOX)
        mask = background_mask(small, 1, cfg.dark_threshold, cfg.bright_threshold)
    for top in range(0, S - w + 1, w):
        for left in range(0, S - w + 1, w):
            if (
                mask is not None
                and _background_fraction(mask, factor, left, top, w) > cfg.max_background_fraction
            ):
                plan.filtered += 1
                continue
            plan.positions.append((left, top))
    return plan


def _plan_star(args: tuple[str, WindowsConfig, int, str]) -> ImagePlan:
    return plan_image(*args)


class WindowIndex:
    """The windows of a run as arrays (cheap to share with DataLoader workers): image ``images[i]``,
    top-left corner, and the side of the square the image was resized to (0: native resolution)."""

    def __init__(
        self,
        images: list[str],
        image_id: np.ndarray,
        left: np.ndarray,
        top: np.ndarray,
        resize: np.ndarray,
        window_size: int,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.images = images
        self.image_id, self.left, self.top, self.resize = image_id, left, top, resize
        self.window_size = int(window_size)
        self.info = info or {}

    def __len__(self) -> int:
        return len(self.image_id)

    def window(self, i: int) -> tuple[str, int, int, int]:
        return self.images[int(self.image_id[i])], int(self.left[i]), int(self.top[i]), int(self.resize[i])

    @classmethod
    def from_plans(cls, plans: list[ImagePlan], window_size: int) -> WindowIndex:
        images: list[str] = []
        ids, lefts, tops, sizes = [], [], [], []
        for p in plans:
            if p.error is not None or not p.positions:
                continue
            k = len(images)
            images.append(p.path)
            for left, top in p.positions:
                ids.append(k)
                lefts.append(left)
                tops.append(top)
                sizes.append(p.resize)
        unreadable = [{"path": p.path, "reason": p.error} for p in plans if p.error is not None]
        native = sum(len(p.positions) for p in plans if p.kind == NATIVE and p.error is None)
        info = {
            "files_found": len(plans),
            "unreadable": len(unreadable),
            "unreadable_files": unreadable,
            "images_used": len(images),
            "windows": len(ids),
            "native_windows": native,
            "tile_windows": len(ids) - native,
            "background_filtered": sum(p.filtered for p in plans),
            "window_size": window_size,
        }
        as_int = lambda v: np.asarray(v, dtype=np.int32)  # noqa: E731
        return cls(images, as_int(ids), as_int(lefts), as_int(tops), as_int(sizes), window_size, info)

    def to_csv(self, path: str | Path) -> None:
        """``image,kind,left,top,resize`` per window (kind ``native`` or ``tile``)."""

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                out = csv.writer(f)
                out.writerow(["image", "kind", "left", "top", "resize", "size"])
                for i in range(len(self)):
                    img, left, top, resize = self.window(i)
                    out.writerow([img, TILE if resize else NATIVE, left, top, resize, self.window_size])

        atomic_write(path, write)

    @classmethod
    def from_csv(cls, path: str | Path, info: dict[str, Any] | None = None) -> WindowIndex:
        path = Path(path)
        images: dict[str, int] = {}
        ids, lefts, tops, sizes, size = [], [], [], [], 0
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                ids.append(images.setdefault(row["image"], len(images)))
                lefts.append(int(row["left"]))
                tops.append(int(row["top"]))
                sizes.append(int(row["resize"]))
                size = int(row["size"])
        as_int = lambda v: np.asarray(v, dtype=np.int32)  # noqa: E731
        return cls(list(images), as_int(ids), as_int(lefts), as_int(tops), as_int(sizes), size, info)


def build_index(cfg: WindowsConfig, seed: int = 0, found: dict[Path, str] | None = None) -> WindowIndex:
    """Discover the images of ``cfg.images`` (or take ``found``: path -> key, see :func:`dataset_images`),
    read each once, and list their windows (see module doc)."""
    found = find_images(cfg.images, cfg.extensions) if found is None else found
    files = sorted(found)
    if not files:
        raise ValueError(f"no images with extensions {cfg.extensions} under {list(cfg.images)}")
    log.info("reading %d images to plan %d^2 windows", len(files), cfg.window_size)
    jobs = [(str(f), cfg, seed, found[f]) for f in files]
    if cfg.scan_workers > 0 and len(files) > 1:
        with ProcessPoolExecutor(cfg.scan_workers) as pool:
            plans = list(pool.map(_plan_star, jobs, chunksize=max(1, len(jobs) // (8 * cfg.scan_workers))))
    else:
        plans = []
        for i, job in enumerate(jobs):
            plans.append(_plan_star(job))
            if (i + 1) % 1000 == 0:
                log.info("read %d / %d images", i + 1, len(jobs))
    index = WindowIndex.from_plans(plans, int(cfg.window_size))
    info = index.info
    if info["unreadable"]:
        shown = "; ".join(f"{u['path']}: {u['reason']}" for u in info["unreadable_files"][:5])
        log.warning(
            "%d of %d files could not be read and are skipped (%s%s)",
            info["unreadable"],
            len(files),
            shown,
            "; ..." if info["unreadable"] > 5 else "",
        )
    log.info(
        "%d windows from %d images (%d native crops, %d tiles; %d left out as background)",
        info["windows"],
        info["images_used"],
        info["native_windows"],
        info["tile_windows"],
        info["background_filtered"],
    )
    if not len(index):
        raise ValueError(
            f"no windows: {info['files_found']} files found, {info['unreadable']} unreadable, "
            f"{info['background_filtered']} windows left out as background "
            f"(windows.max_background_fraction = {cfg.max_background_fraction})"
        )
    return index


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one window's views: a function of (seed, epoch, index) only."""
    return (seed * 1_000_003 + epoch * 10_007 + index * 7_919_999) % (2**63 - 1)


class WindowDataset(Dataset):
    """Window ``i`` -> ``{"global": (2, 3, G, G), "local": (n_local, 3, l, l), "index": i}``."""

    def __init__(
        self, index: WindowIndex, transform: MultiCrop, seed: int = 0, max_image_pixels: int | None = None
    ) -> None:
        self.index = index
        self.transform = transform
        self.seed = seed
        self.max_image_pixels = max_image_pixels
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def load_window(self, i: int) -> Image.Image:
        path, left, top, resize = self.index.window(i)
        kw = {"max_pixels": self.max_image_pixels} if self.max_image_pixels else {}
        img = load_image(path, **kw)
        if resize:
            img = img.resize((resize, resize), Image.Resampling.BICUBIC)
        w = self.index.window_size
        return img.crop((left, top, left + w, top + w))

    def __getitem__(self, i: int) -> dict[str, Any]:
        for attempt in range(min(len(self), 64)):  # a file that became unreadable: take the next window
            j = (i + attempt) % len(self)
            try:
                window = self.load_window(j)
                break
            except BadImageError as e:
                log.warning("window %d skipped: %s", j, e)
        else:
            raise ValueError(f"windows {i} to {j}: none of their images can be read any more")
        g, loc = self.transform(window, item_seed(self.seed, self.epoch, i))
        return {"global": g, "local": loc, "index": torch.tensor(i)}


def make_loader(
    dataset: WindowDataset,
    batch_size: int,
    *,
    seed: int,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """Shuffled per (seed, epoch), sharded by rank; incomplete last batches are dropped (DINO).
    ``pin_memory`` when the batches go to a CUDA device; workers persist from epoch to epoch."""
    if len(dataset) < batch_size * world_size:
        raise ValueError(
            f"only {len(dataset)} windows for a batch of {batch_size} x {world_size} device(s); "
            "add images or lower optim.batch_size"
        )
    sampler = EpochSampler(len(dataset), seed=seed, shuffle=True, rank=rank, world_size=world_size, pad=True)
    return DataLoader(
        EpochIndexed(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=True,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
    )
