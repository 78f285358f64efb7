"""The torch ``Dataset`` that turns a :class:`~remixformer.data.cases.CaseTable` into model samples.

A sample follows the batch contract of docs/architecture.md (one case, no batch dimension):
``clinical`` / ``dermoscopy`` float ``(3, S, S)`` ImageNet-normalised, ``metadata`` float ``(dim,)``,
``<key>_present`` bool, ``targets`` (task -> long scalar or float ``(A,)``), ``case_id``, ``index``.
Only the modalities the model uses are loaded (a metadata-only model decodes no image).

Training draws one image per modality per epoch; evaluation expands a case with several images into
one sample per image combination (same ``case_id``) so that evaluation can average them. All
randomness (image choice, remix donor, augmentation) derives from ``(seed, epoch, case index)``:
independent of worker count and order, identical on resume. Call :meth:`set_epoch` every epoch.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from remixformer.data.cases import IMAGE_MODALITIES, CaseTable
from remixformer.data.config import DEFAULT_MAX_IMAGE_PIXELS
from remixformer.data.images import BadImageError, load_image
from remixformer.data.remix import RemixPairing
from remixformer.data.transforms import build_image_transform, resize_uint8
from remixformer.keys import CASE_ID, IGNORE_INDEX, INDEX, MODALITY_KEYS, TARGETS, present_key
from remixformer.modalities import parse_modalities
from remixformer.tasks import MULTI

log = logging.getLogger(__name__)

_STREAM = {"choice": 0, "C": 1, "D": 2}


def _torch_seed(*parts: int) -> int:
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class MultiModalDataset(Dataset):
    """Samples of ``table`` restricted to ``indices`` (case indices into the table).

    ``modalities``: letters the model uses (subset of ``"CDM"``). ``remix``: training only, borrow a
    missing modality (of ``remix_modalities``) from a same-diagnosis case among ``indices``.
    ``cache_images``: decode every image once, resized to the model size (uint8, in memory); training
    augmentations then start from that resized copy. ``skip_bad_cases``: an image that fails to load
    while caching drops its case (warning listing each); one that fails later is treated as absent for
    that sample, with a warning naming the file and the case. Otherwise a :class:`BadImageError` names them.
    ``augment``: training augmentation policy, ``paper`` (default), ``light``, ``flips`` or ``none``
    (see :func:`~remixformer.data.transforms.build_image_transform`).

    Images are yielded as uint8 ``(3, S, S)`` tensors (zeros where absent): a quarter of float32's bytes
    through the workers' shared memory and to the device; the model normalises them there
    (:func:`remixformer.layers.imaging.normalize_images`).
    """

    def __init__(
        self,
        table: CaseTable,
        indices: Sequence[int],
        modalities: str = "CDM",
        clinical_size: int = 256,
        dermoscopy_size: int = 256,
        train: bool = False,
        remix: bool = False,
        seed: int = 0,
        *,
        remix_modalities: str = "CD",
        cache_images: bool = False,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        skip_bad_cases: bool = False,
        expand_images: bool | None = None,
        augment: str = "paper",
    ) -> None:
        self.modalities = parse_modalities(modalities)
        self.table = table
        self.sizes = {"C": int(clinical_size), "D": int(dermoscopy_size)}
        self.train = bool(train)
        self.remix = bool(remix) and self.train
        self.seed = int(seed)
        self.max_image_pixels = max_image_pixels
        self.skip_bad_cases = skip_bad_cases
        self.indices = [int(i) for i in indices]
        missing = [m for m in self.modalities if m not in table.modalities]
        if missing:
            log.warning(
                "%s has no %s data: the model's %s input will be absent for every case",
                table.name,
                "/".join(missing),
                "/".join(MODALITY_KEYS[m] for m in missing),
            )
        self.image_letters = [m for m in IMAGE_MODALITIES if m in self.modalities]
        self.transforms = {
            m: build_image_transform(self.sizes[m], train=self.train, policy=augment, normalize=False)
            for m in self.image_letters
        }
        self.pairing = (
            RemixPairing(table, self.indices, "".join(m for m in remix_modalities if m in self.modalities))
            if self.remix
            else None
        )
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by persistent workers too
        self._metadata = (
            table.schema.encode_many([table.cases[i].metadata for i in range(len(table))])
            if "M" in self.modalities
            else None
        )
        self._meta_known = table.has_modality("M") if "M" in self.modalities else None
        expand = (not self.train) if expand_images is None else expand_images
        self.samples = self._make_samples(expand)
        self._cache: dict[tuple[str, int], torch.Tensor] = {}
        if cache_images:
            self._fill_cache()

    # --- structure -----------------------------------------------------------------------------
    def _make_samples(self, expand: bool) -> list[tuple[int, dict[str, int]]]:
        samples: list[tuple[int, dict[str, int]]] = []
        for i in self.indices:
            case = self.table.cases[i]
            if not expand:
                samples.append((i, {}))
                continue
            options = [range(len(case.images(m))) or [-1] for m in self.image_letters]
            for combo in itertools.product(*options):
                samples.append((i, dict(zip(self.image_letters, combo))))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def sample_case_indices(self) -> np.ndarray:
        """Table index of the case of every sample (several samples per case in evaluation)."""
        return np.asarray([i for i, _ in self.samples], dtype=np.int64)

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations, image choices and remix donors are drawn."""
        self._epoch.fill_(int(epoch))

    # --- images --------------------------------------------------------------------------------
    def _fill_cache(self) -> None:
        wanted: dict[tuple[str, int], str] = {}
        for i in self.indices:
            case = self.table.cases[i]
            for m in self.image_letters:
                for p in case.images(m):
                    wanted.setdefault((p, self.sizes[m]), case.case_id)
        failed: dict[str, str] = {}
        for (path, size), case_id in wanted.items():
            try:
                img = load_image(path, max_pixels=self.max_image_pixels, case_id=case_id)
            except BadImageError as e:
                if not self.skip_bad_cases:
                    raise
                failed[case_id] = str(e)
                continue
            self._cache[(path, size)] = resize_uint8(img, size)
        n_bytes = sum(t.numel() for t in self._cache.values())
        log.info("image cache: %d images, %.1f MiB", len(self._cache), n_bytes / 2**20)
        if failed:  # a case with one bad image is dropped entirely
            bad_cases = set(failed)
            log.warning(
                "skipping %d case(s) whose images could not be read: %s",
                len(bad_cases),
                "; ".join(f"{c}: {failed[c]}" for c in sorted(failed)),
            )
            ids = self.table.case_ids
            self.indices = [i for i in self.indices if ids[i] not in bad_cases]
            self.samples = [s for s in self.samples if ids[s[0]] not in bad_cases]
            if self.pairing is not None:
                self.pairing = RemixPairing(self.table, self.indices, self.pairing.modalities)

    def _load(self, path: str, letter: str, case_id: str) -> Any:
        key = (path, self.sizes[letter])
        if key in self._cache:
            return self._cache[key]
        return load_image(path, max_pixels=self.max_image_pixels, case_id=case_id)

    def _image(
        self, case_index: int, letter: str, choice: int | None, rng: np.random.Generator
    ) -> torch.Tensor | None:
        case = self.table.cases[case_index]
        source = case
        paths = case.images(letter)
        if not paths and self.pairing is not None:
            donor = self.pairing.donor(case_index, letter, rng)
            if donor is not None:
                source = self.table.cases[donor]
                paths = source.images(letter)
        if not paths:
            return None
        j = (
            choice
            if (choice is not None and choice >= 0 and source is case)
            else int(rng.integers(len(paths)))
        )
        try:
            img = self._load(paths[j], letter, source.case_id)
        except BadImageError as e:
            if not self.skip_bad_cases:
                raise
            log.warning("treating an unreadable image as absent (skip_bad_cases): %s", e)
            return None
        tf = self.transforms[letter]
        if not self.train:
            return tf(img).as_subclass(torch.Tensor)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_torch_seed(self.seed, self.epoch, case_index, _STREAM[letter]))
            return tf(img).as_subclass(torch.Tensor)

    # --- samples -------------------------------------------------------------------------------
    def _targets(self, case_index: int) -> dict[str, torch.Tensor]:
        case = self.table.cases[case_index]
        out = {}
        for t in self.table.tasks:
            v = case.targets.get(t.name)
            if t.kind == MULTI:
                arr = (
                    np.full(t.num_classes, np.nan, dtype=np.float32)
                    if v is None
                    else np.asarray(v, np.float32)
                )
                out[t.name] = torch.from_numpy(arr.copy())
            else:
                out[t.name] = torch.tensor(IGNORE_INDEX if v is None else int(v), dtype=torch.long)
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        case_index, choices = self.samples[i]
        rng = np.random.default_rng(
            np.random.SeedSequence([self.seed, self.epoch, case_index, _STREAM["choice"]])
        )
        item: dict[str, Any] = {}
        for letter in self.image_letters:
            key = MODALITY_KEYS[letter]
            x = self._image(case_index, letter, choices.get(letter), rng)
            size = self.sizes[letter]
            item[key] = x if x is not None else torch.zeros(3, size, size, dtype=torch.uint8)
            item[present_key(key)] = torch.tensor(x is not None)
        if self._metadata is not None:
            src = case_index
            if (
                not self._meta_known[case_index]
                and self.pairing is not None
                and "M" in self.pairing.modalities
            ):
                donor = self.pairing.donor(case_index, "M", rng)
                src = donor if donor is not None else case_index
            item[MODALITY_KEYS["M"]] = torch.from_numpy(self._metadata[src].copy())
            item[present_key(MODALITY_KEYS["M"])] = torch.tensor(bool(self._meta_known[src]))
        item[TARGETS] = self._targets(case_index)
        item[CASE_ID] = self.table.cases[case_index].case_id
        item[INDEX] = case_index
        return item


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch dict (see docs/architecture.md)."""
    if not samples:
        raise ValueError("collate: empty list of samples")
    first = samples[0]
    batch: dict[str, Any] = {}
    for key, value in first.items():
        if key == TARGETS:
            batch[TARGETS] = {t: torch.stack([s[TARGETS][t] for s in samples]) for t in value}
        elif key == CASE_ID:
            batch[CASE_ID] = [s[CASE_ID] for s in samples]
        elif key == INDEX:
            batch[INDEX] = torch.tensor([s[INDEX] for s in samples], dtype=torch.long)
        else:
            batch[key] = torch.stack([s[key] for s in samples])
    return batch
