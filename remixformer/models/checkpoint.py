"""Our model checkpoints: one safetensors file holding the weights and, in its header, the JSON config
(model sizes and switches, tasks with label names, metadata schema) and free-form extras (training
run, data set). Saved atomically; never unpickled; loaded strictly: every header field is checked, the
weights must be finite, and their shapes must be what the config describes (checked on the meta device,
before the model is allocated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from remixformer.config import ConfigError, apply_renames, from_dict, to_dict
from remixformer.models.config import ModelConfig
from remixformer.models.registry import build_model
from remixformer.schema import MetadataSchema
from remixformer.serialization import CheckpointError, read_safetensors, save_tensors

FORMAT = "remixformer-model"
VERSION = "1"
MAX_DERIVED_BYTES = 2**30  # buffers the model computes from its sizes, on top of the stored tensors


def save_model(model: torch.nn.Module, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a RemixFormer) and its config to ``path`` (``.safetensors``)."""
    return save_tensors(path, model.state_dict(), header_fields(model, extra))


def _header_json(path: Path | str, meta: dict[str, str], key: str, required: bool) -> Any:
    """One JSON header field, which must hold a JSON object; a CheckpointError naming file and field."""
    if key not in meta:
        if required:
            raise CheckpointError(f"{path}: its header has no {key!r} field")
        return {}
    try:
        value = json.loads(meta[key])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: its header field {key!r} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise CheckpointError(
            f"{path}: its header field {key!r} must be a JSON object, got a {type(value).__name__}"
        )
    return value


def header_fields(model: torch.nn.Module, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The header of a model file: format, version, config and extras as strings (JSON). ONNX exports
    and Hub folders carry the same fields, read back by :func:`config_from_header`."""
    return {
        "format": FORMAT,
        "format_version": VERSION,
        "config": json.dumps(to_dict(model.config)),
        "extra": json.dumps(extra or {}),
    }


def config_from_header(path: Path | str, meta: dict[str, str]) -> tuple[ModelConfig, dict[str, Any]]:
    """Config and extras from the header fields of :func:`header_fields`, every field checked
    (CheckpointError naming ``path`` and the field)."""
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a remixformer model checkpoint "
            f"(format {meta.get('format')!r}, expected {FORMAT!r}); "
            "training-state files (*.state.safetensors) are for --resume, model files for evaluation"
        )
    if meta.get("format_version", VERSION) != VERSION:
        raise CheckpointError(
            f"{path}: format version {meta.get('format_version')!r}; "
            f"this remixformer reads version {VERSION!r}"
        )
    raw = _header_json(path, meta, "config", required=True)
    # files written before a config key was renamed (e.g. "name" -> "preset"): read without a warning,
    # the file is data, not a spelling the user chose
    raw = apply_renames(ModelConfig.RENAMED_KEYS, raw, warn=False)
    try:
        cfg = from_dict(ModelConfig, raw)
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its config header is invalid ({e})") from e
    if cfg.metadata_schema is not None:  # optional (a model made in Python may lack one): checked if there
        try:
            schema = MetadataSchema.from_dict(cfg.metadata_schema, where="metadata_schema")
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: its config's metadata schema is invalid ({e})") from e
        if "M" in cfg.modalities and schema.dim != cfg.metadata_dim:
            raise CheckpointError(
                f"{path}: its metadata schema encodes {schema.dim} one-hot slots but the model reads "
                f"{cfg.metadata_dim} (metadata_dim): the schema no longer fits the weights"
            )
    extra = _header_json(path, meta, "extra", required=False)
    return cfg, extra


def read_checkpoint_info(path: str | Path) -> tuple[ModelConfig, dict[str, Any], dict[str, torch.Tensor]]:
    """Config, extras and tensors of a model file, every header field checked (CheckpointError naming
    the file and the field): the format and its version, the config (keys, types, sizes), the metadata
    schema and its width, the extras (a JSON object)."""
    tensors, meta = read_safetensors(path)
    cfg, extra = config_from_header(path, meta)
    return cfg, extra, tensors


def check_finite(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Every floating-point tensor must hold finite numbers (a diverged run saves NaN weights)."""
    bad = []
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad.append(f"{name} ({int((~torch.isfinite(t)).sum()):,} of {t.numel():,} values)")
    if bad:
        raise CheckpointError(
            f"{path}: NaN or infinite weights in {len(bad)} tensor(s), e.g. {', '.join(bad[:3])}; "
            "the training diverged or the file is damaged, and the model could not predict"
        )


def check_shapes(path: str | Path, cfg: ModelConfig, tensors: dict[str, torch.Tensor]) -> None:
    """The model the config describes, built on the meta device (no memory), must have exactly the
    file's tensors: a config edited to ask for other (or huge) sizes is refused before any allocation."""
    try:
        with torch.device("meta"):
            skeleton = build_model(cfg, load_pretrained=False)
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its config does not describe a model that can be built ({e})") from e
    expected = skeleton.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k}: file {tuple(tensors[k].shape)} {tensors[k].dtype}, config {tuple(v.shape)} {v.dtype}"
        for k, v in expected.items()
        if k in tensors and (tuple(tensors[k].shape) != tuple(v.shape) or tensors[k].dtype != v.dtype)
    ]
    stored = sum(t.numel() * t.element_size() for t in tensors.values())
    needed = sum(t.numel() * t.element_size() for t in (*skeleton.parameters(), *skeleton.buffers()))
    if not (missing or unexpected or wrong) and needed > stored + MAX_DERIVED_BYTES:
        raise CheckpointError(
            f"{path}: its config asks for {needed / 2**30:.1f} GiB of weights and buffers, "
            f"{(needed - stored) / 2**30:.1f} GiB more than the file holds"
        )
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} tensor(s) of another shape, e.g. {'; '.join(wrong[:3])}")
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
        raise CheckpointError(f"{path}: weights do not fit the stored config: {'; '.join(parts)}")


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model from its stored config and load the weights strictly, after checking every
    header field, that the weights are finite and that their shapes are the config's."""
    cfg, extra, tensors = read_checkpoint_info(path)
    check_finite(path, tensors)
    check_shapes(path, cfg, tensors)
    model = build_model(cfg, load_pretrained=False)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the stored config: {e}") from e
    model.checkpoint_extra = extra
    return model.to(device).eval()
