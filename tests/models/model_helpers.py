"""Builders shared by the model tests."""

import torch

TASKS = {"diag": 5, "pn": 3}
META_DIM = 12


def make_batch(model, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {}
    m = model.modalities
    if "C" in m:
        s = model.config.clinical.image_size
        batch["clinical"] = torch.randn(B, 3, s, s, generator=g)
    if "D" in m:
        s = model.config.dermoscopy.image_size
        batch["dermoscopy"] = torch.randn(B, 3, s, s, generator=g)
    if "M" in m:
        batch["metadata"] = torch.randn(B, META_DIM, generator=g)
    return batch
