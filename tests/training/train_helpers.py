"""Configs for tiny training runs."""

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
