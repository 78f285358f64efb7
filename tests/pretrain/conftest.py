"""Tiny dermoscopy-like images written in temporary folders, and a tiny DINO config."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from remixformer.config import deep_merge, from_dict, parse_overrides
from remixformer.pretrain.config import PretrainConfig

TINY = {  # remixformer_tiny's T_phi1 (width 16, depth 1, patch 8) on 32^2 windows; a small head
    "backbone": {"preset": "remixformer_tiny", "pretrained": None},
    "head": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
    "windows": {"resize_size": 64, "native_fraction": 0.0},
    "crops": {"n_local": 2},
    "optim": {"batch_size": 8, "epochs": 2, "warmup_epochs": 0},
    "dino": {"warmup_teacher_temp_epochs": 1},
    "trainer": {"progress_bar": False, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 1},
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from several threads, and on a shared machine they wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_images(root: Path, n: int = 12, size: int = 64, seed: int = 0, vignette: bool = True) -> Path:
    """Stripes of 8 orientations/periods on a skin colour, a black vignette in the corners; PNG and JPEG."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    for i in range(n):
        k = i % 8
        angle = (k % 4) * np.pi / 4
        wave = np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / (8 if k < 4 else 16))
        img = np.array([190, 140, 110]) + rng.integers(-20, 20, 3) + wave[..., None] * np.array([60, 50, 40])
        if vignette:
            img[np.hypot(xx - size / 2, yy - size / 2) > 0.62 * size] = 0
        sub = root / f"part{i % 2}" / "deeper"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            sub / f"img{i:02d}.{'png' if i % 2 else 'jpg'}"
        )
    return root


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    root = write_images(tmp_path_factory.mktemp("derm"))
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def tiny_config(*overrides: str, **sections) -> PretrainConfig:
    """TINY, then ``sections`` (nested dicts), then ``key=value`` overrides."""
    data = deep_merge(deep_merge(TINY, sections), parse_overrides(overrides))
    return from_dict(PretrainConfig, data)


@pytest.fixture
def tiny_cfg():
    return tiny_config
