"""Disease-wise remix pairing (Remix, the paper's ref. [15]): in training, a case that lacks a modality
borrows it from another training case with the same diagnosis, so every training sample is complete.

Donors are drawn uniformly among the training cases of the same diagnosis that have the modality, with
the sample's own random generator (reproducible per seed, epoch and case). Cases with an unknown
diagnosis never borrow, and nothing is borrowed at evaluation time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from remixformer.data.cases import CaseTable


class RemixPairing:
    """Donor lists per (modality letter, diagnosis) over a set of training cases."""

    def __init__(self, table: CaseTable, indices: Sequence[int], modalities: str = "CD") -> None:
        self.modalities = modalities
        labels = table.labels()
        self._donors: dict[tuple[str, int], np.ndarray] = {}
        for letter in modalities:
            has = table.has_modality(letter)
            for cls in range(table.tasks[0].num_classes):
                pool = [i for i in indices if labels[i] == cls and has[i]]
                self._donors[(letter, cls)] = np.asarray(pool, dtype=np.int64)
        self._labels = labels

    def donors(self, letter: str, diag: int) -> np.ndarray:
        return self._donors.get((letter, diag), np.zeros(0, dtype=np.int64))

    def donor(self, case_index: int, letter: str, rng: np.random.Generator) -> int | None:
        """A training case of the same diagnosis that has modality ``letter`` (never the case itself)."""
        if letter not in self.modalities:
            return None
        diag = int(self._labels[case_index])
        if diag < 0:
            return None
        pool = self.donors(letter, diag)
        pool = pool[pool != case_index]
        if len(pool) == 0:
            return None
        return int(pool[rng.integers(len(pool))])
