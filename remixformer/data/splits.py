"""Train/validation/test splits: official ones where a data set has them, else grouped k-fold.

k-fold: ``StratifiedGroupKFold`` (stratified by diagnosis, grouped by patient or lesion, shuffled with
``seed``) assigns every case a fold; the test split is fold ``fold``; the validation split is a grouped,
stratified share of about ``val_fraction`` of the remaining cases (one fold of a
``round(1 / val_fraction)``-fold split of them); training is the rest. No group ever straddles two
folds or two splits (checked, not assumed).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from remixformer.data.cases import SPLITS, CaseTable
from remixformer.serialization import write_text_atomic

log = logging.getLogger(__name__)

OFFICIAL = "official"
KFOLD = "kfold"
AUTO = "auto"


def resolve_protocol(table: CaseTable, protocol: str) -> str:
    """``auto`` -> ``official`` when every case carries an official split, else ``kfold``."""
    if protocol == AUTO:
        return OFFICIAL if table.has_official_split else KFOLD
    if protocol == OFFICIAL and not table.has_official_split:
        missing = sum(c.split not in SPLITS for c in table.cases)
        raise ValueError(
            f"{table.name}: protocol 'official' asked for, but {missing} of {len(table)} cases have no "
            "official split (this data set has none, or the manifest's split column is absent or "
            "incomplete); use protocol 'kfold'"
        )
    if protocol not in (OFFICIAL, KFOLD):
        raise ValueError(f"protocol must be 'auto', 'official' or 'kfold', got {protocol!r}")
    return protocol


def _sgkf(labels: np.ndarray, groups: np.ndarray, n_splits: int, seed: int) -> list[np.ndarray]:
    """Test-index arrays of a shuffled StratifiedGroupKFold (sklearn's small-class warnings logged)."""
    n_groups = len(pd.unique(groups))
    if n_groups < n_splits:
        raise ValueError(
            f"cannot make {n_splits} grouped folds from only {n_groups} groups (patients/lesions)"
        )
    _, counts = np.unique(labels, return_counts=True)
    if (counts < n_splits).all():
        # every class is smaller than the number of folds (tiny sets): stratification is impossible
        log.info(
            "fold assignment: every class has fewer than %d cases; folds grouped, not stratified", n_splits
        )
        sgkf = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return [test for _, test in sgkf.split(np.zeros(len(labels)), labels, groups)]
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folds = [test for _, test in sgkf.split(np.zeros(len(labels)), labels, groups)]
    for w in caught:
        log.info("fold assignment: %s", w.message)
    return folds


def assign_folds(labels: Sequence[int], groups: Sequence[str], n_folds: int, seed: int) -> np.ndarray:
    """Fold number (0 .. n_folds-1) of every case: stratified by ``labels``, grouped by ``groups``."""
    labels = np.asarray(labels)
    groups = np.asarray(groups, dtype=object)
    fold_of = np.full(len(labels), -1, dtype=np.int64)
    for k, test in enumerate(_sgkf(labels, groups, n_folds, seed)):
        fold_of[test] = k
    assert (fold_of >= 0).all()
    return fold_of


def fold_assignment(table: CaseTable, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """:func:`assign_folds` on a table's diagnosis labels and group ids."""
    return assign_folds(table.labels(), table.group_ids, n_folds, seed)


def _carve_validation(
    table: CaseTable, pool: np.ndarray, val_fraction: float, seed: int
) -> tuple[list, list]:
    """Split ``pool`` (case indices) into (train, val) with val ~ val_fraction, grouped and stratified."""
    if val_fraction <= 0 or len(pool) == 0:
        return sorted(pool.tolist()), []
    n_splits = max(2, int(round(1.0 / val_fraction)))
    labels = table.labels()[pool]
    groups = table.group_ids[pool]
    val_local = _sgkf(labels, groups, n_splits, seed)[0]
    val = pool[val_local]
    train = np.setdiff1d(pool, val)
    return sorted(train.tolist()), sorted(val.tolist())


def split_indices(
    table: CaseTable,
    protocol: str = AUTO,
    n_folds: int = 5,
    fold: int = 0,
    val_fraction: float = 0.15,
    seed: int = 0,
) -> dict[str, list[int]]:
    """``{"train": [...], "val": [...], "test": [...]}`` case indices into ``table``.

    Official protocol: the cases' own ``split``; when the official split has no validation cases and
    ``val_fraction > 0``, validation is carved from the training cases (grouped, stratified).
    """
    protocol = resolve_protocol(table, protocol)
    if protocol == OFFICIAL:
        out = {s: [i for i, c in enumerate(table.cases) if c.split == s] for s in SPLITS}
        if not out["val"] and val_fraction > 0 and out["train"]:
            log.info(
                "%s: the official split has no validation cases; carving %.0f%% of train",
                table.name,
                100 * val_fraction,
            )
            out["train"], out["val"] = _carve_validation(table, np.asarray(out["train"]), val_fraction, seed)
    else:
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold must be in [0, {n_folds - 1}], got {fold}")
        fold_of = fold_assignment(table, n_folds, seed)
        test = np.flatnonzero(fold_of == fold)
        rest = np.flatnonzero(fold_of != fold)
        train, val = _carve_validation(table, rest, val_fraction, seed + 1000 * (fold + 1))
        out = {"train": train, "val": val, "test": sorted(test.tolist())}
    check_disjoint_groups(table, out)
    return out


def splits_from_config(table: CaseTable, cfg) -> dict[str, list[int]]:
    """:func:`split_indices` with the protocol, folds, validation share and seed of a ``DataConfig``."""
    return split_indices(table, cfg.protocol, cfg.n_folds, cfg.fold, cfg.val_fraction, cfg.seed)


def check_disjoint_groups(table: CaseTable, splits: Mapping[str, Sequence[int]]) -> None:
    """Raise ``ValueError`` when a case is in two splits or a group (patient/lesion) straddles splits."""
    seen: dict[int, str] = {}
    group_split: dict[str, str] = {}
    for name, idx in splits.items():
        for i in idx:
            if i in seen:
                raise ValueError(
                    f"{table.name}: case {table.cases[i].case_id!r} is in both {seen[i]} and {name}"
                )
            seen[i] = name
            g = table.cases[i].group_id
            other = group_split.setdefault(g, name)
            if other != name:
                raise ValueError(
                    f"{table.name}: group (patient/lesion) {g!r} has cases in both {other} and {name} "
                    f"(e.g. case {table.cases[i].case_id!r}); a group must stay in one split"
                )


def folds_from_config(table: CaseTable, cfg) -> np.ndarray | None:
    """Per-case fold numbers under ``cfg``'s k-fold protocol; ``None`` for an official split."""
    if resolve_protocol(table, cfg.protocol) != KFOLD:
        return None
    return fold_assignment(table, cfg.n_folds, cfg.seed)


def write_splits(
    table: CaseTable,
    splits: Mapping[str, Sequence[int]],
    run_dir: str | Path,
    folds: np.ndarray | None = None,
    filename: str = "splits.csv",
    cfg=None,
) -> Path:
    """Write ``splits.csv`` (case_id, group_id, split, fold) into ``run_dir``.

    ``fold`` is each case's k-fold fold number, from ``folds`` (see :func:`fold_assignment`) or, given
    the run's ``DataConfig`` as ``cfg``, computed from it; blank for an official split.
    """
    if folds is None and cfg is not None:
        folds = folds_from_config(table, cfg)
    rows = []
    for name in SPLITS:
        for i in splits.get(name, []):
            c = table.cases[i]
            rows.append(
                {
                    "case_id": c.case_id,
                    "group_id": c.group_id,
                    "split": name,
                    "fold": "" if folds is None else int(folds[i]),
                }
            )

    path = Path(run_dir) / filename
    frame = pd.DataFrame(rows, columns=["case_id", "group_id", "split", "fold"])
    return write_text_atomic(path, frame.to_csv(index=False))


def read_splits(table: CaseTable, path: str | Path) -> dict[str, list[int]]:
    """Read a ``splits.csv`` written by :func:`write_splits` back into case indices (e.g. on resume)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    for line, (cid, split) in enumerate(zip(df["case_id"], df["split"]), start=2):
        if split not in out:
            raise ValueError(
                f"{path} line {line}, column 'split': expected one of {list(SPLITS)}, got {split!r}"
            )
        try:
            out[split].append(table.index_of(cid))
        except KeyError:
            raise ValueError(f"{path} line {line}: case {cid!r} is not in data set {table.name!r}") from None
    check_disjoint_groups(table, out)
    return out
