"""The three modalities, their letters and names, and the one parser of a set of letters.

Letters: ``C`` clinical photo, ``D`` dermoscopy image, ``M`` metadata; a set of them is written in that
order (``"CDM"``, ``"CM"``...). Names are the batch keys of ``remixformer.keys`` (``clinical``,
``dermoscopy``, ``metadata``), also the image columns of a manifest and the form fields of the service.

Case: every place that reads letters from a user (configs, the command line, ``--withhold``, reader-study
stages, ``remix_modalities``, Python arguments) accepts either case and works with the upper-case letters
in canonical order; ``parse_modalities`` is the one function that does it.
"""

from __future__ import annotations

from collections.abc import Iterable

from remixformer.keys import MODALITY_KEYS

LETTERS = "CDM"
NAMES: dict[str, str] = dict(MODALITY_KEYS)  # letter -> name: C clinical, D dermoscopy, M metadata
IMAGE_LETTERS = "CD"  # the modalities that are images


def modality_name(letter: str) -> str:
    """``"C"`` (or ``"c"``) -> ``"clinical"``."""
    try:
        return NAMES[letter.upper()]
    except KeyError:
        raise ValueError(f"unknown modality letter {letter!r}; expected one of C, D, M") from None


def modality_names(letters: Iterable[str]) -> list[str]:
    """``"CM"`` (or ``["C", "M"]``) -> ``["clinical", "metadata"]`` (in the order given)."""
    return [modality_name(m) for m in letters]


def parse_modalities(value: object, where: str = "modalities", allow_empty: bool = False) -> str:
    """A set of modality letters, checked: either case; ``+``, ``,`` and spaces are ignored; the result is
    upper case in canonical order (``"dc"`` -> ``"CD"``). Raises ValueError naming ``where``."""
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string of letters from 'CDM', got {value!r}")
    letters = value.upper().replace("+", "").replace(",", "").replace(" ", "").strip()
    bad = sorted(set(letters) - set(LETTERS))
    if bad:
        raise ValueError(
            f"{where} must be a subset of 'CDM' (C clinical photo, D dermoscopy, M metadata); "
            f"{value!r} has unknown letter(s) {bad}"
        )
    if not letters and not allow_empty:
        raise ValueError(
            f"{where} is empty: choose a non-empty subset of 'CDM' (clinical, dermoscopy, metadata)"
        )
    return "".join(m for m in LETTERS if m in letters)
