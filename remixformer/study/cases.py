"""The cases of a study, read from a manifest through the data layer, and the stages they are shown in.

Cases come from :func:`remixformer.data.registry.load_dataset` (the manifest format of docs/data.md):
image paths, metadata as the manifest has it (leaky fields left out, as for a model), the diagnosis as
the label. Images are decoded with :func:`remixformer.data.images.load_image` (EXIF orientation
applied, 8-bit RGB, the pixel limit checked) and stored re-encoded, so no file name, EXIF block or
other embedded text of the original file reaches a reader. PNG files stay PNG (lossless), others become
JPEG at quality 95; an image longer than ``max_side`` is shrunk to it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from remixformer.config import from_dict
from remixformer.data.config import DEFAULT_MAX_IMAGE_PIXELS, DataConfig
from remixformer.data.images import load_image
from remixformer.data.registry import load_dataset

log = logging.getLogger(__name__)

DEFAULT_STAGES = ("C", "CM", "CDM")
LETTERS = "CDM"
LETTER_WORDS = {"C": "clinical photo", "D": "dermoscopy", "M": "metadata"}
DEFAULT_MAX_SIDE = 2048
JPEG_QUALITY = 95


def parse_stages(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"C,CM,CDM"`` (or a list) -> ``("C", "CM", "CDM")``, checked.

    Each stage is a set of the letters C (clinical photo), D (dermoscopy image), M (metadata), written
    in that order; every stage must show everything the one before showed and more.
    """
    items = (
        [s.strip() for s in value.split(",")] if isinstance(value, str) else [str(s).strip() for s in value]
    )
    if not items or not all(items):
        raise ValueError(f"stages {value!r}: expected a comma-separated list such as C,CM,CDM")
    stages: list[str] = []
    for item in items:
        letters = item.upper()
        bad = sorted(set(letters) - set(LETTERS))
        if bad or len(set(letters)) != len(letters):
            raise ValueError(
                f"stage {item!r}: expected distinct letters from C (clinical photo), D (dermoscopy), "
                f"M (metadata), e.g. CM"
            )
        stage = "".join(ch for ch in LETTERS if ch in letters)
        if stages and not (set(stages[-1]) < set(stage)):
            raise ValueError(
                f"stage {item!r} after {stages[-1]!r}: each stage must show everything the previous one "
                f"showed and more (e.g. C, CM, CDM)"
            )
        stages.append(stage)
    return tuple(stages)


def describe_stage(stage: str) -> str:
    """``"CM"`` -> ``"clinical photo + metadata"``."""
    return " + ".join(LETTER_WORDS[ch] for ch in stage)


@dataclass
class StudyCase:
    """One case as the study stores it (images still as paths)."""

    case_id: str
    label: str | None
    metadata: dict[str, str | None]
    clinical: list[str] = field(default_factory=list)
    dermoscopy: list[str] = field(default_factory=list)
    source: str = ""

    def images(self) -> list[tuple[str, int, str]]:
        """(modality letter, position, path) of every image."""
        return [("C", i, p) for i, p in enumerate(self.clinical)] + [
            ("D", i, p) for i, p in enumerate(self.dermoscopy)
        ]


@dataclass
class PreparedCases:
    """What :func:`cases_from_manifest` found: the cases to read, classes, metadata fields, notes."""

    cases: list[StudyCase]
    classes: tuple[str, ...]
    fields: list[dict[str, str]]  # {"name", "description"} of each metadata field shown at M stages
    source: str
    notes: list[str] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (case id, why)


@dataclass(frozen=True)
class EncodedImage:
    media_type: str
    width: int
    height: int
    data: bytes


def cases_from_manifest(
    manifest: str | Path,
    schema: str | Path | None = None,
    *,
    stages: Sequence[str] = DEFAULT_STAGES,
    split: str | None = None,
    max_cases: int | None = None,
    classes: Sequence[str] | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> PreparedCases:
    """Read the study's cases from a manifest (and its schema file, default ``schema.json`` beside it).

    ``split``: only the cases of that ``split`` value. Cases lacking a modality some stage shows (no
    clinical photo for a C stage, no known metadata field for an M stage) are left out and listed in
    ``left_out`` and a note. ``max_cases``: the first N remaining cases in manifest order. ``classes``:
    the answers readers choose from (default: the manifest's diagnosis classes); every label must be
    one of them. Missing image files are an error listing them (the data layer's check).
    """
    manifest = Path(manifest).expanduser()
    if schema is None:
        schema = manifest.parent / "schema.json"
    cfg = from_dict(
        DataConfig,
        {
            "dataset": "manifest",
            "root": str(manifest.parent),
            "manifest": str(manifest),
            "schema": str(schema),
            "max_image_pixels": int(max_image_pixels),
        },
    )
    table = load_dataset(cfg)
    diag = table.tasks[0]
    needed = set("".join(stages))
    notes: list[str] = list(table.notes)
    chosen = list(table.cases)
    if split is not None:
        if not any(c.split for c in chosen):
            raise ValueError(f"{manifest}: --split {split!r} given, but the manifest has no 'split' column")
        chosen = [c for c in chosen if c.split == split]
        if not chosen:
            raise ValueError(f"{manifest}: no case has split {split!r}; expected one of train, val, test")
        notes.append(f"cases of split {split!r} only ({len(chosen)})")
    left_out: list[tuple[str, str]] = []
    kept = []
    for c in chosen:
        lacking = [
            LETTER_WORDS[m]
            for m in sorted(needed)
            if (m == "C" and not c.clinical)
            or (m == "D" and not c.dermoscopy)
            or (m == "M" and not table.schema.known_mask(c.metadata))
        ]
        if lacking:
            left_out.append((c.case_id, f"no {' and no '.join(lacking)}"))
        else:
            kept.append(c)
    if left_out:
        notes.append(
            f"{len(left_out)} case(s) left out for lacking a modality the stages show: "
            + ", ".join(f"{cid} ({why})" for cid, why in left_out[:20])
            + (" ..." if len(left_out) > 20 else "")
        )
        log.info("%s: %s", manifest, notes[-1])
    if max_cases is not None:
        if max_cases < 1:
            raise ValueError(f"max_cases must be at least 1, got {max_cases}")
        if len(kept) > max_cases:
            notes.append(f"the first {max_cases} of {len(kept)} eligible cases in manifest order")
            kept = kept[:max_cases]
    if not kept:
        raise ValueError(
            f"{manifest}: no case left to read (every case lacks a modality of the stages {list(stages)})"
        )
    names = tuple(classes) if classes is not None else tuple(diag.classes)
    if len(set(names)) != len(names) or not names or not all(str(n).strip() for n in names):
        raise ValueError(f"classes {list(names)}: expected distinct, non-empty class names")
    out = []
    n_unknown = 0
    for c in kept:
        idx = int(c.targets.get(diag.name, -1))
        label = diag.classes[idx] if idx >= 0 else None
        n_unknown += label is None
        if label is not None and label not in names:
            raise ValueError(
                f"{c.where()}: diagnosis {label!r} is not one of the study's classes {list(names)}; "
                "every label must be a class readers can choose"
            )
        metadata = {f: (None if v is None else str(v)) for f, v in c.metadata.items()}
        out.append(StudyCase(c.case_id, label, metadata, list(c.clinical), list(c.dermoscopy), c.source))
    if n_unknown:
        notes.append(f"{n_unknown} case(s) without a diagnosis (their answers cannot be scored)")
    fields = [{"name": f.name, "description": f.description or ""} for f in table.schema.fields]
    source = f"{manifest.resolve()} (schema {Path(schema).resolve()}{f', split {split}' if split else ''})"
    return PreparedCases(out, names, fields, source, notes, left_out)


def encode_image(
    path: str | Path,
    *,
    max_side: int | None = DEFAULT_MAX_SIDE,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    case_id: str | None = None,
) -> EncodedImage:
    """Decode an image file as the data layer does and re-encode it for the study (no metadata kept)."""
    img = load_image(path, max_pixels=max_pixels, case_id=case_id)
    if max_side and max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if Path(path).suffix.lower() == ".png":
        img.save(buf, format="PNG", optimize=False)
        media_type = "image/png"
    else:
        img.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
        media_type = "image/jpeg"
    return EncodedImage(media_type, img.width, img.height, buf.getvalue())
