"""Permutation importance of the metadata fields (the paper's Fig. 10).

For each field and each repeat, the field's slice of the one-hot metadata vector is shuffled across
the cases (one random permutation of the cases that have metadata; the other fields and the images
stay in place) and the model predicts again. The importance of the field is the drop in diagnosis
accuracy, ``baseline - shuffled``, and for each class the drop in its recall (the accuracy on the
cases of that class), averaged over the repeats (mean and sample standard deviation). Positive = the
model relied on the field; about 0 = it did not; negative = noise or harm.

Predictions of samples sharing a case id are averaged before scoring and ties count as wrong, as in
``remixformer evaluate``. Randomness: the permutation of field ``f`` (its index in the schema) in
repeat ``r`` comes from ``numpy.random.SeedSequence([seed, r, f])``, so a result does not depend on
which other fields are analysed.

Speed: metadata enters the model after the image branches, so for a RemixFormer the clinical and
dermoscopy branch outputs of every batch are computed once, kept (on the CPU) and replayed while only
the metadata branch, fusion and heads run again (``cache_branches``; about 1 MB per case at the
paper's sizes). Any other model (anything with ``modalities``, ``tasks`` and ``model(batch)``) is run
in full again, re-reading the loader, which must then yield the same cases in the same order.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from remixformer import keys
from remixformer.data.loaders import answerable, evaluation_loader
from remixformer.evaluation import metrics as M
from remixformer.evaluation.evaluate import align_to_model
from remixformer.evaluation.predictions import Predictions
from remixformer.evaluation.report import to_jsonable
from remixformer.models.branch import BranchOutput
from remixformer.schema import MetadataSchema

log = logging.getLogger(__name__)

OVERALL = "accuracy"  # name of the first measure: overall accuracy; the others are class names (recall)


@dataclass
class ImportanceResult:
    """Drops of every field, repeat and measure.

    ``drops``: (repeats, fields, 1 + classes); measure 0 is the overall accuracy, measure ``1 + c`` the
    recall of class ``c`` (NaN for a class without cases). ``baseline``: (1 + classes,) unshuffled.
    """

    fields: list[str]
    classes: list[str]
    baseline: np.ndarray
    drops: np.ndarray
    support: np.ndarray
    n_cases: int
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def measures(self) -> list[str]:
        return [OVERALL, *self.classes]

    @property
    def repeats(self) -> int:
        return int(self.drops.shape[0])

    def mean(self) -> np.ndarray:
        """(fields, 1 + classes) mean drop over the repeats."""
        with np.errstate(invalid="ignore"), _quiet_nan_warnings():
            return np.nanmean(self.drops, axis=0)

    def std(self) -> np.ndarray:
        """(fields, 1 + classes) sample standard deviation over the repeats (NaN with one repeat)."""
        if self.repeats < 2:
            return np.full(self.drops.shape[1:], np.nan)
        with np.errstate(invalid="ignore"), _quiet_nan_warnings():
            return np.nanstd(self.drops, axis=0, ddof=1)

    def ranking(self) -> list[str]:
        """Fields by mean accuracy drop, largest first (ties keep the schema order)."""
        m = self.mean()[:, 0]
        order = sorted(range(len(self.fields)), key=lambda i: (-np.nan_to_num(m[i], nan=-np.inf), i))
        return [self.fields[i] for i in order]

    def to_dict(self) -> dict[str, Any]:
        mean, std = self.mean(), self.std()
        return to_jsonable(
            {
                "method": "permutation importance: baseline minus shuffled, per field, mean over repeats",
                "n_cases": self.n_cases,
                "repeats": self.repeats,
                "seed": self.seed,
                "classes": self.classes,
                "support": {c: int(s) for c, s in zip(self.classes, self.support)},
                "baseline": dict(zip(self.measures, self.baseline)),
                "ranking": self.ranking(),
                "fields": {
                    f: {
                        m: {"mean_drop": mean[i, j], "std_drop": std[i, j], "drops": self.drops[:, i, j]}
                        for j, m in enumerate(self.measures)
                    }
                    for i, f in enumerate(self.fields)
                },
                "notes": self.notes,
            }
        )

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return path

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per (field, measure): ``field, measure, baseline, mean_drop, std_drop, repeats,
        support`` (measure ``accuracy`` or a class name; support = cases of that class)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        mean, std = self.mean(), self.std()
        support = [self.n_cases, *self.support.tolist()]
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["field", "measure", "baseline", "mean_drop", "std_drop", "repeats", "support"])
            for i, name in enumerate(self.fields):
                for j, m in enumerate(self.measures):
                    w.writerow(
                        [
                            name,
                            m,
                            _fmt(self.baseline[j]),
                            _fmt(mean[i, j]),
                            _fmt(std[i, j]),
                            self.repeats,
                            support[j],
                        ]
                    )
        return path


def _fmt(v: float) -> str:
    return "" if v is None or np.isnan(v) else repr(float(v))


@contextlib.contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ----------------------------------------------------------------------------------------------------
# Replaying the image branches
# ----------------------------------------------------------------------------------------------------


class _BranchReplay(nn.Module):
    """Stands in for an image branch: records its outputs call by call, then hands them back in order."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch
        self.recording = True
        self.outputs: list[Any] = []
        self.position = 0

    def forward(self, x: torch.Tensor, explain: bool = False):
        if self.recording:
            out = self.branch(x, explain=False)
            self.outputs.append((out.embedding.detach().cpu(), out.tokens.detach().cpu()))
            return out
        emb, tok = self.outputs[self.position]
        self.position += 1
        if emb.shape[0] != x.shape[0]:
            raise RuntimeError("replayed branch output does not match the batch (cases out of order)")
        return BranchOutput(emb.to(x.device), tok.to(x.device))

    def rewind(self) -> None:
        self.recording = False
        self.position = 0


@contextlib.contextmanager
def _replaying(model: nn.Module, letters: str) -> Iterator[dict[str, _BranchReplay]]:
    branches = model.branches
    originals = {m: branches[m] for m in letters}
    replays = {m: _BranchReplay(b) for m, b in originals.items()}
    try:
        for m, r in replays.items():
            branches[m] = r
        yield replays
    finally:
        for m, b in originals.items():
            branches[m] = b


def _can_replay(model: nn.Module) -> str:
    branches = getattr(model, "branches", None)
    if not isinstance(branches, nn.ModuleDict):
        return ""
    return "".join(m for m in "CD" if m in branches)


def _light(batch: dict[str, Any], letters: str) -> dict[str, Any]:
    """The batch without image pixels: images become zero-stride stand-ins of the same shape."""
    out = dict(batch)
    for m in letters:
        key = keys.MODALITY_KEYS[m]
        if key in out and isinstance(out[key], torch.Tensor):
            x = out[key]
            out[key] = torch.zeros((), dtype=x.dtype, device=x.device).expand(x.shape)
    return out


# ----------------------------------------------------------------------------------------------------
# Permutation importance
# ----------------------------------------------------------------------------------------------------


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _score(case_ids: Sequence[str], task: Any, logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(1 + classes,): case-level accuracy and per-class recall (tie rule of the evaluation)."""
    preds = Predictions.from_logits(case_ids, [task], {task.name: logits}, {task.name: targets})
    preds = preds.aggregate_by_case()
    y, p = preds.targets[task.name], preds.probs[task.name]
    return np.concatenate([[M.accuracy(y, p)], M.per_class_metrics(y, p)["sensitivity"]])


def _fields_to_analyse(
    model: nn.Module, schema: Any, repeats: int, fields: Sequence[str] | None
) -> tuple[list[str], dict[str, slice], dict[str, int]]:
    """The fields to shuffle, their slices of the one-hot vector and their index in the schema."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if "M" not in model.modalities:
        raise ValueError(f"the model does not use metadata (its modalities are {model.modalities})")
    slices = schema.field_slices()
    names = list(fields) if fields is not None else list(schema.field_names)
    unknown = [f for f in names if f not in slices]
    if unknown or not names:
        raise ValueError(f"unknown metadata field(s) {unknown}; fields are {schema.field_names}")
    return names, slices, {f: i for i, f in enumerate(schema.field_names)}


@dataclass
class _FirstPass:
    """What the unshuffled pass saw, sample by sample (``stored``: the batches without image pixels,
    when the image branches are replayed)."""

    sample_ids: list[str]
    meta: torch.Tensor
    present: torch.Tensor
    targets: np.ndarray
    logits: np.ndarray
    stored: list[dict[str, Any]]


def _first_pass(
    model: nn.Module, loader: Iterable[dict[str, Any]], task: Any, device: torch.device, replay: str
) -> _FirstPass:
    """Baseline predictions and the metadata of every sample; the image branches record as they go."""
    stored: list[dict[str, Any]] = []
    sample_ids: list[str] = []
    meta_rows: list[torch.Tensor] = []
    present_rows: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []
    for batch in loader:
        if keys.METADATA not in batch:
            raise ValueError("the batches hold no metadata; permutation importance needs it")
        batch = _to_device(batch, device)
        B = len(batch[keys.CASE_ID])
        logits.append(model(batch)[keys.LOGITS][task.name].float().cpu())
        sample_ids += [str(c) for c in batch[keys.CASE_ID]]
        meta_rows.append(batch[keys.METADATA].cpu())
        mask = batch.get(keys.METADATA_PRESENT)
        present_rows.append(torch.ones(B, dtype=torch.bool) if mask is None else mask.bool().cpu())
        targets.append(batch[keys.TARGETS][task.name].cpu())
        if replay:
            stored.append(_light(batch, replay))
    if not sample_ids:
        raise ValueError("no cases to analyse: the loader is empty")
    return _FirstPass(
        sample_ids,
        torch.cat(meta_rows),
        torch.cat(present_rows),
        torch.cat(targets).numpy(),
        torch.cat(logits).numpy(),
        stored,
    )


@dataclass
class _CaseMetadata:
    """Metadata per case (samples of one case share it) and which cases may be shuffled."""

    sample_case: np.ndarray  # (samples,): the case index of each sample
    meta: torch.Tensor  # (cases, metadata_dim)
    shufflable: np.ndarray  # indices of the cases that have metadata
    notes: list[str]


def _case_metadata(sample_ids: Sequence[str], meta: torch.Tensor, present: torch.Tensor) -> _CaseMetadata:
    case_of: dict[str, int] = {}
    sample_case = np.asarray([case_of.setdefault(c, len(case_of)) for c in sample_ids])
    first = torch.from_numpy(np.unique(sample_case, return_index=True)[1])  # first sample of each case
    case_meta = meta[first]
    if not torch.equal(case_meta[sample_case], meta):
        raise ValueError("samples of one case carry different metadata")
    case_present = present[first].numpy()
    shufflable = np.flatnonzero(case_present)
    notes = []
    if len(shufflable) < len(case_of):
        notes.append(
            f"{len(case_of) - len(shufflable)} case(s) without metadata keep theirs (never shuffled)"
        )
    if len(shufflable) < 2:
        raise ValueError(f"{len(shufflable)} case(s) with metadata: nothing to shuffle")
    return _CaseMetadata(sample_case, case_meta, shufflable, notes)


def _predict_again(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    replays: dict[str, _BranchReplay],
    sample_ids: Sequence[str],
    per_sample_meta: torch.Tensor,
    task: Any,
    device: torch.device,
) -> np.ndarray:
    """The model's logits on the same samples with their metadata replaced by ``per_sample_meta``:
    from the stored batches with the image branches replayed, or by re-reading the loader."""
    for r in replays.values():
        r.rewind()
    out, start = [], 0
    for batch in batches:
        batch = _to_device(batch, device) if not replays else batch
        B = len(batch[keys.CASE_ID])
        if [str(c) for c in batch[keys.CASE_ID]] != list(sample_ids[start : start + B]):
            raise ValueError("the loader gave other cases on a second pass; it must not shuffle")
        batch = dict(batch)
        batch[keys.METADATA] = per_sample_meta[start : start + B].to(device)
        out.append(model(batch)[keys.LOGITS][task.name].float().cpu())
        start += B
    if start != len(sample_ids):
        raise ValueError("the loader gave fewer cases on a second pass")
    return torch.cat(out).numpy()


def permutation_importance(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    schema: Any,
    *,
    repeats: int = 5,
    seed: int = 0,
    fields: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    cache_branches: bool = True,
) -> ImportanceResult:
    """Permutation importance of each metadata field of ``schema`` (a ``MetadataSchema``) for the
    diagnosis (the model's first task), on the labelled cases of ``loader`` (batches of the
    ``remixformer.keys`` contract; their metadata must be encoded with ``schema``)."""
    names, slices, field_index = _fields_to_analyse(model, schema, repeats, fields)
    task = model.tasks[0]
    device = torch.device(device)
    model = model.to(device).eval()
    replay = _can_replay(model) if cache_branches else ""

    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        replays = stack.enter_context(_replaying(model, replay)) if replay else {}
        seen = _first_pass(model, loader, task, device, replay)  # the image branches recorded
        sample_ids, y = seen.sample_ids, seen.targets
        baseline = _score(sample_ids, task, seen.logits, y)
        labelled = int(len(set(c for c, t in zip(sample_ids, y) if t >= 0)))
        if labelled == 0:
            raise ValueError("none of the cases has a known diagnosis")
        cases = _case_metadata(sample_ids, seen.meta, seen.present)
        batches: Iterable[dict[str, Any]] = seen.stored if replay else loader

        def predict(new_case_meta: torch.Tensor) -> np.ndarray:
            per_sample = new_case_meta[cases.sample_case]
            return _predict_again(model, batches, replays, sample_ids, per_sample, task, device)

        if replay:  # the replayed branches give back exactly what the model computed
            again = predict(cases.meta)
            if not np.allclose(again, seen.logits, rtol=1e-5, atol=1e-5):
                raise RuntimeError("replaying the image branches changed the predictions")

        drops = np.full((repeats, len(names), 1 + task.num_classes), np.nan)
        shufflable = cases.shufflable
        for r in range(repeats):
            for i, name in enumerate(names):
                rng = np.random.default_rng(np.random.SeedSequence([seed, r, field_index[name]]))
                perm = shufflable[rng.permutation(len(shufflable))]
                sl = slices[name]
                shuffled = cases.meta.clone()
                shuffled[shufflable, sl] = cases.meta[perm, sl]
                drops[r, i] = baseline - _score(sample_ids, task, predict(shuffled), y)
            log.info("permutation importance: repeat %d/%d done", r + 1, repeats)

    support = np.bincount(
        np.asarray([t for c, t in dict(zip(sample_ids, y.tolist())).items() if t >= 0], dtype=np.int64),
        minlength=task.num_classes,
    )
    return ImportanceResult(
        fields=names,
        classes=list(task.classes),
        baseline=baseline,
        drops=drops,
        support=support,
        n_cases=labelled,
        seed=seed,
        notes=cases.notes,
    )


def importance_on_cases(
    model: nn.Module,
    table: Any,
    indices: Sequence[int],
    *,
    repeats: int = 5,
    seed: int = 0,
    fields: Sequence[str] | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    only_with_metadata: bool = True,
    max_image_pixels: int | None = None,
    cache_branches: bool = True,
) -> ImportanceResult:
    """:func:`permutation_importance` on cases ``indices`` of a data set (``CaseTable``), read as
    ``remixformer evaluate`` reads them (relabelled to the model's classes, its metadata schema).

    ``only_with_metadata``: analyse the cases that have metadata (default), since shuffling cannot
    change the others.
    """
    table = align_to_model(table, model)
    cfg = model.config
    schema = MetadataSchema.from_dict(cfg.metadata_schema) if cfg.metadata_schema else table.schema
    indices, unanswerable = answerable(table, list(indices), cfg.modalities)
    notes = []
    if unanswerable:
        notes.append(f"{len(unanswerable)} case(s) have none of the model's modalities and were left out")
    if only_with_metadata:
        has_m = table.has_modality("M")
        without = [i for i in indices if not has_m[i]]
        if without:
            notes.append(f"{len(without)} case(s) without metadata were left out")
        indices = [i for i in indices if has_m[i]]
    labels = table.labels(model.tasks[0].name)
    unlabelled = [i for i in indices if labels[i] < 0]
    if unlabelled:
        notes.append(f"{len(unlabelled)} case(s) without a known diagnosis were left out")
    indices = [i for i in indices if labels[i] >= 0]
    if not indices:
        raise ValueError(f"{table.name}: no labelled case with metadata to analyse")
    for n in notes:
        log.info("permutation importance: %s", n)
    kwargs = {} if max_image_pixels is None else {"max_image_pixels": max_image_pixels}
    loader, _ = evaluation_loader(
        table, indices, cfg, batch_size=batch_size, num_workers=num_workers, **kwargs
    )
    result = permutation_importance(
        model,
        loader,
        schema,
        repeats=repeats,
        seed=seed,
        fields=fields,
        device=device,
        cache_branches=cache_branches,
    )
    result.notes = notes + result.notes
    return result
