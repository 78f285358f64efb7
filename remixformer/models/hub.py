"""Models in the Hugging Face Hub layout: a folder with ``config.json``, ``model.safetensors`` and a
``README.md`` model card.

    save_pretrained(model, "hub/remixformer-derm7pt", card={"training_data": "Derm7pt ...", ...})
    model = from_pretrained("hub/remixformer-derm7pt")        # a local folder
    model = from_pretrained("someone/remixformer-derm7pt")    # a Hub repository (downloaded)

``model.safetensors`` is our checkpoint file (docs/architecture.md): its header holds the config and
it loads with :func:`~remixformer.models.checkpoint.load_model` on its own. ``config.json`` repeats the
config for the Hub's page and for tools that read it; loading checks that both agree. The model card
(:func:`model_card`) says what the model is for and what it is not: a research tool, not a medical
device. Facts only the trainer knows (training data and its licence, metrics and how they were
measured, limitations) come from ``card``; any left out are marked for the author to fill in.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from remixformer.config import to_dict
from remixformer.modalities import modality_names
from remixformer.models.checkpoint import FORMAT, VERSION, load_model, save_model
from remixformer.serialization import CheckpointError, write_text_atomic

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
TO_FILL = "NOT STATED: the author must fill this in before publishing"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class CardFacts:
    """What the model card states that the checkpoint cannot know."""

    training_data: str = TO_FILL
    data_licence: str = TO_FILL
    licence: str = "apache-2.0"  # of the weights (the Hub's `license` field)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_how: str = TO_FILL  # data set split, number of cases, folds, test-time options
    limitations: list[str] = field(default_factory=list)
    intended_use: str = (
        "Research on multi-modal skin-lesion classification (clinical photo, dermoscopy image, patient "
        "metadata): reproducing the RemixFormer++ paper, comparing models, studying readers with AI help."
    )

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "card") -> CardFacts:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
        facts = cls(**raw)
        if not isinstance(facts.metrics, dict) or not all(
            isinstance(v, (int, float)) for v in facts.metrics.values()
        ):
            raise ValueError(f"{where}: metrics must map names to numbers, got {facts.metrics!r}")
        if not isinstance(facts.limitations, list):
            raise ValueError(f"{where}: limitations must be a list of sentences")
        return facts


def load_card_facts(path: str | Path) -> CardFacts:
    """Card facts from a YAML file (the keys of :class:`CardFacts`)."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a YAML mapping of model-card facts, got {type(raw).__name__}")
    return CardFacts.from_dict(raw, where=str(path))


GENERAL_LIMITATIONS = (
    "Not a medical device and not validated for clinical use; its output is not a diagnosis.",
    "Trained on the images of the data set named above: photos from other cameras, skin types, "
    "body sites or populations may be scored worse, without warning.",
    "The probabilities are those of the training distribution's classes; a lesion of another kind "
    "still gets one of these classes.",
)


def model_card(model: torch.nn.Module, facts: CardFacts, extra: dict[str, Any] | None = None) -> str:
    """The README.md of a Hub folder: front matter for the Hub, then intended use, data, metrics and
    limitations."""
    cfg = model.config
    extra = extra or {}
    diag = cfg.task_specs[0]
    front = {
        "license": facts.licence,
        "library_name": "remixformer",
        "pipeline_tag": "image-classification",
        "tags": ["dermatology", "skin-lesion", "dermoscopy", "multi-modal", "remixformer"],
    }
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# RemixFormer++ ({cfg.preset}, modalities {cfg.modalities})",
        "",
        "**Research tool, not a medical device.** Its output is not a diagnosis and must not guide the "
        "care of a patient.",
        "",
        "## Model",
        "",
        f"- inputs: {', '.join(modality_names(cfg.modalities))} (any subset per case)",
        f"- diagnosis classes ({diag.num_classes}): {', '.join(diag.classes)}",
        f"- tasks: {', '.join(t.name for t in cfg.task_specs)}",
        f"- parameters: {n_params / 1e6:.1f} M; preset `{cfg.preset}`",
        f"- training run: {extra.get('run', 'not recorded')}, epoch {extra.get('epoch', 'not recorded')}",
        "",
        "## Intended use",
        "",
        facts.intended_use,
        "",
        "## Training data",
        "",
        f"{facts.training_data} (data set named by the checkpoint: {extra.get('dataset', 'none')})",
        "",
        f"Licence of the data: {facts.data_licence}. Licence of these weights: {facts.licence}.",
        "",
        "## Metrics",
        "",
    ]
    if facts.metrics:
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4g} |" for k, v in facts.metrics.items()]
    else:
        lines.append(f"No metrics given. {TO_FILL}")
    lines += ["", f"How they were measured: {facts.metrics_how}", "", "## Limitations", ""]
    lines += [f"- {x}" for x in (*facts.limitations, *GENERAL_LIMITATIONS)]
    lines += [
        "",
        "## How to use",
        "",
        "```python",
        "from remixformer.models.hub import from_pretrained",
        "from remixformer.serving import Predictor",
        "",
        'predictor = Predictor(from_pretrained("<this repository or folder>"))',
        'result = predictor.predict(clinical="photo.jpg", dermoscopy="derm.png")',
        "```",
        "",
    ]
    return "\n".join(lines)


def save_pretrained(
    model: torch.nn.Module,
    directory: str | Path,
    *,
    card: CardFacts | dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.json``, ``model.safetensors`` and ``README.md`` to ``directory`` (created)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{directory}: exists and is not a folder")
    facts = card if isinstance(card, CardFacts) else CardFacts.from_dict(card or {})
    extra = dict(extra if extra is not None else getattr(model, "checkpoint_extra", {}) or {})
    directory.mkdir(parents=True, exist_ok=True)
    save_model(model, directory / WEIGHTS_FILE, extra)
    config = {
        "format": FORMAT,
        "format_version": VERSION,
        "library_name": "remixformer",
        "model_type": "remixformer",
        "config": to_dict(model.config),
        "extra": extra,
    }
    write_text_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    write_text_atomic(directory / CARD_FILE, model_card(model, facts, extra))
    log.info("saved %s (%s)", directory, ", ".join(HUB_FILES))
    return directory


def _download(repo_id: str, revision: str | None) -> Path:
    import huggingface_hub

    return Path(huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=list(HUB_FILES)))


def from_pretrained(
    name_or_path: str | Path, *, revision: str | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The model of a Hub folder: a local directory, or a Hub repository id ("owner/name", downloaded
    through ``huggingface_hub.snapshot_download`` into its cache). Loaded strictly (the checkpoint's
    checks) and compared with ``config.json``."""
    path = Path(name_or_path)
    if path.is_dir():
        directory = path
    elif isinstance(name_or_path, str) and _REPO_ID.match(name_or_path) and not path.exists():
        directory = _download(name_or_path, revision)
    else:
        raise FileNotFoundError(
            f"{name_or_path}: neither a folder with {WEIGHTS_FILE} and {CONFIG_FILE} "
            "nor a Hub repository id (owner/name)"
        )
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: no {name}; a Hub folder holds {', '.join(HUB_FILES)}")
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{directory / CONFIG_FILE}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(
            f"{directory / CONFIG_FILE}: not a remixformer config (expected format {FORMAT!r})"
        )
    model = load_model(directory / WEIGHTS_FILE, device)
    if config.get("config") != to_dict(model.config):
        raise CheckpointError(
            f"{directory}: {CONFIG_FILE} and the header of {WEIGHTS_FILE} describe different models; "
            "the weights' header is the one that fits them: write the folder again with save_pretrained"
        )
    return model
