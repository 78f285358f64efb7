"""Run a model over a data set and collect :class:`Predictions` (used by training, evaluate, cv, the
demo and the analyses). Modalities can be withheld to measure robustness to a missing input."""

from __future__ import annotations

import logging
from typing import Any

import torch
from tqdm.auto import tqdm

from remixformer import keys
from remixformer.evaluation.predictions import Predictions

log = logging.getLogger(__name__)


def withhold_modalities(batch: dict[str, Any], letters: str) -> dict[str, Any]:
    """The batch with the modalities ``letters`` (e.g. "C") marked absent for every case."""
    batch = dict(batch)
    for m in letters.upper():
        key = keys.MODALITY_KEYS[m]
        if key in batch:
            batch[keys.present_key(key)] = torch.zeros(len(batch[keys.CASE_ID]), dtype=torch.bool)
    return batch


def _usable_rows(batch: dict[str, Any], modalities: str) -> torch.Tensor:
    B = len(batch[keys.CASE_ID])
    ok = torch.zeros(B, dtype=torch.bool)
    for m in modalities:
        key = keys.MODALITY_KEYS[m]
        if key in batch:
            ok |= batch.get(keys.present_key(key), torch.ones(B, dtype=torch.bool)).bool().cpu()
    return ok


def _select(batch: dict[str, Any], rows: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    idx = rows.nonzero().flatten()
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v[idx]
        elif isinstance(v, dict):
            out[k] = {kk: vv[idx] for kk, vv in v.items()}
        elif isinstance(v, list):
            out[k] = [v[i] for i in idx.tolist()]
        else:
            out[k] = v
    return out


def _flip(batch: dict[str, Any]) -> dict[str, Any]:
    out = dict(batch)
    for key in (keys.CLINICAL, keys.DERMOSCOPY):
        if key in out:
            out[key] = out[key].flip(-1)
    return out


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    loader: Any,
    *,
    device: str | torch.device = "cpu",
    withhold: str = "",
    tta_flip: bool = False,
    progress: bool = True,
    desc: str = "predict",
) -> tuple[Predictions, list[str]]:
    """Probabilities for every sample of ``loader`` (batches of the :mod:`remixformer.keys` contract).

    Returns the predictions (one row per sample; aggregate by case for metrics) and the ids of cases
    left out because, with ``withhold``, none of the model's modalities remained for them.
    """
    model = model.to(device).eval()
    tasks = model.tasks
    parts: list[Predictions] = []
    dropped: list[str] = []
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        if withhold:
            batch = withhold_modalities(batch, withhold)
        rows = _usable_rows(batch, model.modalities)
        if not bool(rows.all()):
            dropped += [c for c, ok in zip(batch[keys.CASE_ID], rows.tolist()) if not ok]
            if not bool(rows.any()):
                continue
            batch = _select(batch, rows)
        inputs = {
            k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()
        }
        logits = model(inputs)[keys.LOGITS]
        if tta_flip:
            flipped = model(_flip(inputs))[keys.LOGITS]
            logits = {k: (v + flipped[k]) / 2 for k, v in logits.items()}
        parts.append(Predictions.from_logits(batch[keys.CASE_ID], tasks, logits, batch.get(keys.TARGETS)))
    if not parts:
        raise ValueError(
            "no case could be predicted" + (f" with modalities {withhold!r} withheld" if withhold else "")
        )
    if dropped:
        log.warning(
            "%d case(s) had none of the model's modalities left and were not predicted", len(set(dropped))
        )
    return Predictions.concatenate(parts), sorted(set(dropped))
