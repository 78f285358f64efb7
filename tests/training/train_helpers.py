"""Configs for tiny training runs, as a RunConfig or as command-line overrides; comparing weights."""

import torch
from safetensors.torch import load_file

from remixformer.config import resolve
from remixformer.training.config import RunConfig


def tiny_config(root, out, *overrides):
    return resolve(
        RunConfig,
        [],
        [
            "name=tiny",
            f"output_dir={out}",
            "seed=1",
            "model.preset=remixformer_tiny",
            "model.modalities=CDM",
            "data.dataset=synthetic",
            f"data.root={root}",
            "data.cache_images=true",
            "train.max_epochs=2",
            "train.batch_size=8",
            "train.optimizer=adamw",
            "train.lr=0.003",
            "train.progress_bar=false",
            "train.accelerator=cpu",
            "train.devices=1",
            *overrides,
        ],
    )


def overrides(root, *extra):
    """The tiny run of :func:`tiny_config` as command-line overrides (for a child process)."""
    return [
        "name=tiny",
        "seed=1",
        "model.preset=remixformer_tiny",
        "model.modalities=CDM",
        "data.dataset=synthetic",
        f"data.root={root}",
        "data.cache_images=true",
        "train.batch_size=8",
        "train.optimizer=adamw",
        "train.lr=0.003",
        "train.progress_bar=false",
        "train.accelerator=cpu",
        "train.devices=1",
        *extra,
    ]


def assert_same_weights(a, b):
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)
