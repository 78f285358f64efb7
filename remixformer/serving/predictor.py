"""``Predictor``: a trained model on new cases, from file paths, bytes, PIL images or arrays.

    predictor = Predictor.from_checkpoint("runs/x/checkpoints/best.safetensors")
    result = predictor.predict(clinical="photo.jpg", dermoscopy=None, metadata={"sex": "female"})
    result.top_k  # [("NEV", 0.71), ("MEL", 0.20), ...]

Any subset of the modalities the model was trained with may be given; metadata is checked strictly
against the model's schema (unknown fields or values are errors, blanks are allowed).

Two backends: eager PyTorch (``from_checkpoint``, the default) and onnxruntime over an exported graph
(``from_onnx``, docs/export.md): same preprocessing and answers, no attention maps.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from remixformer import keys
from remixformer.data import transforms
from remixformer.data.config import DEFAULT_MAX_IMAGE_PIXELS
from remixformer.data.images import ImageInput, to_pil
from remixformer.modalities import NAMES
from remixformer.models.checkpoint import load_model
from remixformer.schema import MetadataSchema
from remixformer.serving.onnx_export import OnnxModel, file_digest
from remixformer.tasks import MULTI

log = logging.getLogger(__name__)

LETTER_NAMES = NAMES  # C -> clinical ...; kept importable from here (remixformer/modalities.py defines it)


class PredictionError(RuntimeError):
    """The model could not give a valid answer (non-finite outputs): a fault of the model, not the input."""


@dataclass
class CasePrediction:
    """The answer for one case. ``probabilities[task][class]``; ``top_k`` of the diagnosis."""

    probabilities: dict[str, dict[str, float]]
    top_k: list[tuple[str, float]]
    diagnosis: str
    modalities_used: str
    explanation: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "diagnosis": self.diagnosis,
            "top_k": [{"class": c, "probability": p} for c, p in self.top_k],
            "probabilities": self.probabilities,
            "modalities_used": self.modalities_used,
        }


BACKENDS = ("eager", "onnxruntime")


class Predictor:
    """A model (eager ``nn.Module`` or :class:`~remixformer.serving.onnx_export.OnnxModel`) with its
    preprocessing; :meth:`load` picks the backend by name."""

    def __init__(
        self,
        model: torch.nn.Module | OnnxModel,
        device: str | torch.device = "cpu",
        *,
        tta_flip: bool = False,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        identity: dict[str, Any] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tta_flip = tta_flip
        self.max_image_pixels = max_image_pixels
        cfg = model.config
        self.schema = MetadataSchema.from_dict(cfg.metadata_schema) if cfg.metadata_schema else None
        if "M" in self.modalities and self.schema is None:
            raise ValueError("the model uses metadata but its checkpoint holds no metadata schema")
        self.identity = identity or {}
        self.backend = "onnxruntime" if isinstance(model, OnnxModel) else "eager"

    @property
    def can_explain(self) -> bool:
        """Whether ``explain=True`` gives attention maps (the eager backend only)."""
        return self.backend == "eager"

    @classmethod
    def load(
        cls, path: str | Path, backend: str = "eager", device: str | torch.device = "cpu", **kwargs: Any
    ) -> Predictor:
        """``backend`` "eager": ``path`` is a checkpoint (.safetensors); "onnxruntime": an exported
        .onnx file (``remixformer export``)."""
        if backend == "eager":
            return cls.from_checkpoint(path, device, **kwargs)
        if backend == "onnxruntime":
            return cls.from_onnx(path, device=device, **kwargs)
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {backend!r}")

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        *,
        threads: int | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> Predictor:
        """An exported graph (``remixformer export --format onnx``) run by onnxruntime on the CPU."""
        path = Path(path)
        model = OnnxModel(path, threads=threads)  # refuses a file that is not .onnx, with how to export one
        extra = model.checkpoint_extra
        identity = {
            "file": path.name,
            "sha256": file_digest(path),
            "run": extra.get("run"),
            "dataset": extra.get("dataset"),
            "epoch": extra.get("epoch"),
            "preset": model.config.preset,
            "backend": "onnxruntime",
            "quantization": model.quantization,  # None, or "int8" (remixformer export --quantize int8)
        }
        return cls(model, device, identity=identity, **kwargs)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu", **kwargs: Any
    ) -> Predictor:
        path = Path(path)
        model = load_model(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        extra = getattr(model, "checkpoint_extra", {}) or {}
        identity = {
            "file": path.name,
            "sha256": digest,
            "run": extra.get("run"),
            "dataset": extra.get("dataset"),
            "epoch": extra.get("epoch"),
            "preset": model.config.preset,
            "backend": "eager",
        }
        return cls(model, device, identity=identity, **kwargs)

    # --- what the model expects --------------------------------------------------------------------
    @property
    def modalities(self) -> str:
        return str(self.model.modalities)

    @property
    def tasks(self):
        return self.model.tasks

    @property
    def input_sizes(self) -> dict[str, int]:
        c = self.model.config
        out: dict[str, int] = {}
        if "C" in self.modalities:
            out["clinical"] = c.clinical.image_size
        if "D" in self.modalities:
            out["dermoscopy"] = c.dermoscopy.image_size
        return out

    def metadata_fields(self) -> list[dict[str, Any]]:
        """Each metadata field with the values it accepts (numeric fields: their bins and bin labels)."""
        if "M" not in self.modalities or self.schema is None:
            return []
        out = []
        for f in self.schema.fields:
            d: dict[str, Any] = {"name": f.name, "kind": f.kind, "values": list(f.values)}
            if f.bins:
                d["bins"] = list(f.bins)
            if f.encoding != "bins":
                d["encoding"] = f.encoding  # "linear": interpolated between the knots in "bins"
            if f.description:
                d["description"] = f.description
            out.append(d)
        return out

    def describe(self) -> dict[str, Any]:
        """Labels, tasks, modalities, metadata schema with allowed values, input sizes, identity."""
        return {
            "modalities": {m: LETTER_NAMES[m] for m in self.modalities},
            "tasks": [t.to_dict() for t in self.tasks],
            "diagnosis_classes": list(self.tasks[0].classes),
            "metadata_schema": self.model.config.metadata_schema if "M" in self.modalities else None,
            "metadata_fields": self.metadata_fields(),
            "input_sizes": self.input_sizes,
            "tta_flip": self.tta_flip,
            "backend": self.backend,
            "checkpoint": self.identity,
        }

    def self_check(self) -> None:
        """Predict one made-up case (grey images of every image modality, one known metadata value) and
        raise :class:`PredictionError` saying why when the model cannot answer with probabilities."""
        images = {
            LETTER_NAMES[m]: np.full((8, 8, 3), 128, dtype=np.uint8) for m in self.modalities if m in "CD"
        }
        metadata = None
        if "M" in self.modalities:
            first = self.schema.fields[0]
            metadata = {first.name: first.values[0]}
        try:
            result = self.predict(metadata=metadata, **images)
        except PredictionError:
            raise
        except Exception as e:
            raise PredictionError(f"the model cannot predict: {type(e).__name__}: {e}") from e
        for task, probs in result.probabilities.items():
            values = np.asarray(list(probs.values()))
            if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()):
                raise PredictionError(f"the model's {task!r} probabilities are not in [0, 1]: {probs}")

    # --- preprocessing -----------------------------------------------------------------------------
    def preprocess(
        self,
        clinical: ImageInput = None,
        dermoscopy: ImageInput = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One case -> a batch of one (see docs/architecture.md). Raises ValueError on bad input."""
        given = {
            "C": clinical is not None,
            "D": dermoscopy is not None,
            "M": metadata is not None and any(v not in (None, "") for v in metadata.values()),
        }
        for m, has in given.items():
            if has and m not in self.modalities:
                raise ValueError(
                    f"the model was trained without {LETTER_NAMES[m]} ({m}); it takes "
                    f"{', '.join(LETTER_NAMES[x] for x in self.modalities)}"
                )
        if not any(given[m] for m in self.modalities):
            raise ValueError(
                f"no input: give at least one of {', '.join(LETTER_NAMES[x] for x in self.modalities)}"
            )
        batch: dict[str, Any] = {keys.CASE_ID: ["case"]}
        for m, image in (("C", clinical), ("D", dermoscopy)):
            if m not in self.modalities:
                continue
            key = keys.MODALITY_KEYS[m]
            size = self.input_sizes[key]
            if image is None:
                batch[key] = torch.zeros(1, 3, size, size)
                batch[keys.present_key(key)] = torch.zeros(1, dtype=torch.bool)
            else:
                pil = to_pil(image, key, self.max_image_pixels)
                batch[key] = transforms.to_model_tensor(pil, size)[None]
                batch[keys.present_key(key)] = torch.ones(1, dtype=torch.bool)
        if "M" in self.modalities:
            values = self.schema.validate(metadata or {})
            batch[keys.METADATA] = torch.from_numpy(self.schema.encode(metadata or {}))[None]
            batch[keys.METADATA_PRESENT] = torch.tensor([any(v is not None for v in values.values())])
        return batch

    # --- prediction --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(
        self,
        clinical: ImageInput = None,
        dermoscopy: ImageInput = None,
        metadata: dict[str, Any] | None = None,
        *,
        top_k: int = 3,
        explain: bool = False,
    ) -> CasePrediction:
        batch = self.preprocess(clinical, dermoscopy, metadata)
        return self.predict_batch(batch, top_k=top_k, explain=explain)[0]

    @torch.no_grad()
    def predict_batch(
        self, batch: dict[str, Any], *, top_k: int = 3, explain: bool = False
    ) -> list[CasePrediction]:
        """Predictions for a batch dict (several cases preprocessed and collated)."""
        if explain and not self.can_explain:
            raise ValueError(
                f"explain: the {self.backend} backend gives no attention maps; serve the checkpoint "
                "with the eager backend for them"
            )
        inputs = {k: (v.to(self.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
        out = self.model(inputs, explain=explain)
        logits = out[keys.LOGITS]
        if self.tta_flip:
            flipped = {k: v for k, v in inputs.items()}
            for key in (keys.CLINICAL, keys.DERMOSCOPY):
                if key in flipped:
                    flipped[key] = flipped[key].flip(-1)
            other = self.model(flipped)[keys.LOGITS]
            logits = {k: (v + other[k]) / 2 for k, v in logits.items()}
        for t in self.tasks:
            if not bool(torch.isfinite(logits[t.name]).all()):
                raise PredictionError(
                    f"the model's {t.name!r} outputs are not finite (NaN or infinite); it cannot predict"
                )
        probs = {
            t.name: (logits[t.name].sigmoid() if t.kind == MULTI else logits[t.name].softmax(-1))
            .cpu()
            .numpy()
            for t in self.tasks
        }
        B = next(iter(probs.values())).shape[0]
        used = []
        for b in range(B):
            used.append(
                "".join(
                    m
                    for m in self.modalities
                    if keys.MODALITY_KEYS[m] in batch
                    and bool(batch.get(keys.present_key(keys.MODALITY_KEYS[m]), torch.ones(B))[b])
                )
            )
        maps = out.get(keys.EXPLAIN, {})
        results = []
        diag = self.tasks[0]
        for b in range(B):
            p = {t.name: {c: float(v) for c, v in zip(t.classes, probs[t.name][b])} for t in self.tasks}
            order = np.argsort(-probs[diag.name][b])[: max(1, top_k)]
            ranked = [(diag.classes[i], float(probs[diag.name][b][i])) for i in order]
            results.append(
                CasePrediction(
                    probabilities=p,
                    top_k=ranked,
                    diagnosis=ranked[0][0],
                    modalities_used=used[b],
                    explanation={k: v[b].detach().cpu().numpy() for k, v in maps.items()},
                )
            )
        return results
