"""Pretrained weights through timm, loaded strictly (timm's ``checkpoint_filter_fn`` style).

Each loader is a pure function of (state dict, module): read the file or the hub, unwrap and strip
wrapper prefixes, convert with timm's own filter (original Swin layout, position-embedding resizing to
256^2 windows), drop the classifier, check every key and shape, load, and report which parameters are
new. A wrong or truncated file fails with a message that names it and says what was expected.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("model", "state_dict", "teacher", "model_ema")  # nesting used by timm, DINO, ours
PREFIXES = ("module.", "backbone.", "_orig_mod.")


class WeightLoadError(ValueError):
    """The weights could not be read or do not fit the module."""


@dataclass
class LoadReport:
    source: str
    target: str
    loaded: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)  # parameters of the target that the source does not have
    dropped: list[str] = field(default_factory=list)  # source entries not used (classifier, DINO head)

    def summary(self) -> str:
        return (
            f"{self.target}: loaded {len(self.loaded)} tensors from {self.source}; "
            f"new (randomly initialised): {summarize_names(self.new) or 'none'}; "
            f"dropped from the source: {summarize_names(self.dropped) or 'none'}"
        )


def summarize_names(names: list[str], depth: int = 2) -> str:
    """Group parameter names by their first ``depth`` components: 'csf.* (16), cls_token'."""
    groups: dict[str, int] = {}
    for n in names:
        parts = n.split(".")
        key = ".".join(parts[:depth]) + (".*" if len(parts) > depth else "")
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(k if c == 1 else f"{k} ({c})" for k, c in groups.items())


def read_state_dict(source: str, timm_name: str) -> dict[str, torch.Tensor]:
    """A state dict from ``timm:<name>`` (the hub) or a file (.safetensors, or a PyTorch state dict read
    with ``weights_only=True``, which refuses arbitrary pickled objects)."""
    if source.startswith(("timm:", "hub:")):
        import timm

        name = source.split(":", 1)[1] or timm_name
        try:
            model = timm.create_model(name, pretrained=True, num_classes=0)
        except Exception as e:  # network, hub or name errors all mean the same to the user
            raise WeightLoadError(
                f"could not fetch timm weights {name!r} ({type(e).__name__}: {e}); without internet, "
                "download them elsewhere (e.g. "
                f"`timm.create_model({name!r}, pretrained=True).state_dict()` saved with "
                "safetensors) and pass the file path instead"
            ) from e
        return model.state_dict()
    path = Path(source)
    if not path.is_file():
        raise WeightLoadError(f"weights file not found: {path} (expected a state dict of timm's {timm_name})")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightLoadError(
            f"{path}: could not read weights ({type(e).__name__}: {e}); the file may be truncated or not a "
            f"state dict; expected a safetensors or PyTorch state dict of timm's {timm_name}"
        ) from e
    return unwrap_state_dict(sd, path)


def unwrap_state_dict(sd: object, where: object = "weights") -> dict[str, torch.Tensor]:
    """Take the state dict out of common wrappers and strip ``module.``/``backbone.`` prefixes."""
    for key in WRAPPER_KEYS:
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightLoadError(f"{where}: expected a mapping of parameter names to tensors")
    out = {}
    for k, v in sd.items():
        for p in PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def _check_fit(sd: dict[str, torch.Tensor], ref: nn.Module, source: str, what: str, hint: str = "") -> None:
    expected = ref.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [
        f"{k}: {tuple(sd[k].shape)} vs expected {tuple(expected[k].shape)}"
        for k in sorted(set(sd) & set(expected))
        if sd[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {missing[:4]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:4]})")
        if wrong:
            parts.append(f"wrong shapes {wrong[:4]}")
        raise WeightLoadError(
            f"{source}: does not fit {what}: " + "; ".join([*parts, *([hint] if hint else [])])
        )


_CONV_STEM_KEY = re.compile(r"(^|\.)patch_embed\.proj\.\d+\.")


def check_patch_embedding(
    raw: dict[str, torch.Tensor], patch_embed: nn.Module, source: str, switch: str
) -> None:
    """Stop with a message naming the config switch when the weights and the model disagree on how
    patches are embedded: one linear projection (the paper's encoders, timm and DINO weights) or a
    convolutional stem (``conv_stem``, the presets trained from scratch)."""
    model_conv = not isinstance(patch_embed.proj, nn.Conv2d)
    weights_conv = any(_CONV_STEM_KEY.search(k) for k in raw)
    if model_conv and not weights_conv:
        raise WeightLoadError(
            f"{source}: these weights embed patches with a linear projection, but the model has a "
            f"convolutional stem ({switch}=true, the small preset's default); build it with "
            f"{switch}=false to load them"
        )
    if weights_conv and not model_conv:
        raise WeightLoadError(
            f"{source}: these weights come from an encoder with a convolutional stem; build the model "
            f"with {switch}=true to load them"
        )


CLS_SWIN_NEW = re.compile(r"(^|\.)(cls_token|cls_norm|cls_reduction)(\.|$)")


def _reference_swin(encoder: nn.Module) -> nn.Module:
    """timm's ``SwinTransformer`` of the same sizes as a CLS-Swin encoder (for timm's weight filter)."""
    from timm.models.swin_transformer import SwinTransformer

    return SwinTransformer(
        img_size=encoder.ref_grid * encoder.patch_size,
        patch_size=encoder.patch_size,
        embed_dim=encoder.dims[0],
        depths=[len(stage.blocks) for stage in encoder.layers],
        num_heads=[stage.blocks[0].attn.num_heads for stage in encoder.layers],
        window_size=encoder.window_size,
        num_classes=0,
    )


def load_cls_swin_encoder(encoder: nn.Module, source: str, switch: str = "clinical.conv_stem") -> LoadReport:
    """Weights into a CLS-Swin encoder (the clinical branch's G): either a CLS-Swin state dict (the export
    of ``remixformer pretrain`` with ``backbone.encoder: clinical_encoder``; every tensor, strictly), or
    Swin weights (timm's ``swin_tiny_patch4_window7_224`` or a file of it; the class token and its
    projections at merging stay new)."""
    from timm.models.swin_transformer import checkpoint_filter_fn as swin_filter

    raw = read_state_dict(source, "swin_tiny_patch4_window7_224")
    check_patch_embedding(raw, encoder.patch_embed, source, switch)
    dims = f"embed_dim {encoder.dims[0]}, depths {tuple(len(s.blocks) for s in encoder.layers)}"
    if "cls_token" in raw and any(k.startswith("layers.") for k in raw):  # our own CLS-Swin encoder
        dropped = sorted(k for k in raw if k.startswith("head"))
        sd = {k: v for k, v in raw.items() if not k.startswith("head")}
        _check_fit(sd, encoder, source, f"a CLS-Swin encoder ({dims})")
        encoder.load_state_dict(sd, strict=True)
        return LoadReport(source, "CLS-Swin encoder", sorted(sd), [], dropped)
    ref = _reference_swin(encoder)
    try:
        sd = swin_filter(raw, ref)
    except Exception as e:
        raise WeightLoadError(f"{source}: not Swin weights of the expected layout ({e})") from e
    dropped = sorted(k for k in sd if k.startswith("head"))
    sd = {k: v for k, v in sd.items() if not k.startswith("head")}
    _check_fit(sd, ref, source, f"a Swin encoder ({dims})")
    result = encoder.load_state_dict(sd, strict=False)
    stray = [k for k in result.missing_keys if not CLS_SWIN_NEW.search(k)]
    if result.unexpected_keys or stray:
        raise WeightLoadError(
            f"{source}: Swin weights do not map onto the CLS-Swin encoder: unexpected "
            f"{result.unexpected_keys[:5]}, without weights {stray[:5]}"
        )
    return LoadReport(source, "CLS-Swin encoder", sorted(sd), sorted(result.missing_keys), dropped)


def load_clinical_weights(branch: nn.Module, source: str) -> LoadReport:
    """Swin weights (timm's ``swin_tiny_patch4_window7_224`` or a file of it) or a pretrained CLS-Swin
    encoder (our ``pretrain`` export) into the clinical branch: G takes them (see
    :func:`load_cls_swin_encoder`); L's own last stage and norm start as copies of G's last stage and
    norm. New: what G lacks in the source, and CSF."""
    G: Any = branch.global_encoder  # a CLSSwinEncoder or a ViT encoder (nn.Module attributes are untyped)
    if hasattr(G, "vit"):
        return _load_clinical_vit(branch, source)
    g = load_cls_swin_encoder(G, source)
    loaded = [f"global_encoder.{k}" for k in g.loaded]
    new = {f"global_encoder.{k}" for k in g.new}
    if branch.local_stage is not None:
        last = len(G.layers) - 1
        branch.local_stage.load_state_dict(G.layers[last].state_dict(), strict=True)
        branch.local_norm.load_state_dict(G.norm.state_dict(), strict=True)
        for k in branch.local_stage.state_dict():
            (new.add if f"global_encoder.layers.{last}.{k}" in new else loaded.append)(f"local_stage.{k}")
        loaded += [f"local_norm.{k}" for k in branch.local_norm.state_dict()]
    new |= {n for n, _ in branch.named_parameters() if n.startswith("csf.")}
    return LoadReport(source, "clinical branch (CLS-Swin G and L)", sorted(loaded), sorted(new), g.dropped)


def load_vit_weights(
    vit: nn.Module,
    source: str,
    what: str,
    *,
    timm_name: str = "vit_small_patch16_224.dino",
    hint: str = "",
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """ViT weights (``timm:<name>``, a DINO checkpoint, a timm state dict or our ``pretrain`` export) into
    a timm ``VisionTransformer`` strictly: the head dropped, the patch embedding checked against
    ``dermoscopy.conv_stem``, position embeddings resized to its grid by timm's filter. Returns the
    loaded state dict and the dropped source entries. ``what`` names the target and ``hint`` says what
    to do in the error when the weights do not fit."""
    from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter

    raw = read_state_dict(source, timm_name)
    dropped = sorted(k for k in raw if k.startswith("head"))
    raw = {k: v for k, v in raw.items() if not k.startswith("head")}
    check_patch_embedding(raw, vit.patch_embed, source, "dermoscopy.conv_stem")
    try:
        sd = vit_filter(raw, vit)
    except Exception as e:
        raise WeightLoadError(f"{source}: not ViT weights of the expected layout ({e})") from e
    _check_fit(sd, vit, source, what, hint)
    vit.load_state_dict(sd, strict=True)
    return sd, dropped


def load_window_encoder_weights(branch: nn.Module, source: str) -> LoadReport:
    """ViT weights (timm's ``vit_small_patch16_224.dino``, a DINO checkpoint, or our ``pretrain`` export)
    into the window encoder T_phi1; position embeddings are resized to the window's patch grid."""
    if hasattr(branch.window_encoder, "swin"):
        return _load_swin_window_encoder(branch, source)
    encoder: Any = branch.window_encoder
    vit = encoder.vit
    sd, dropped = load_vit_weights(
        vit, source, f"a ViT window encoder (width {vit.embed_dim}, depth {len(vit.blocks)})"
    )
    prefix = "hrwe.encoder.vit." if branch.hrwe is not None else "single_level.vit."
    new = [n for n, _ in branch.named_parameters() if not n.startswith(prefix)]
    return LoadReport(source, "dermoscopy window encoder T_phi1", [prefix + k for k in sd], new, dropped)


def _load_clinical_vit(branch: nn.Module, source: str) -> LoadReport:
    """ViT weights (timm's ImageNet ViT-S/16 or ViT-B/16, or a file of them) into the ViT that serves as G
    and L (Table X's ViT rows), strictly, through timm's filter. New: CSF."""
    from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter

    vit = branch.global_encoder.vit
    raw = read_state_dict(source, branch.cfg.backbone)
    dropped = sorted(k for k in raw if k.startswith("head"))
    raw = {k: v for k, v in raw.items() if not k.startswith("head")}
    try:
        sd = vit_filter(raw, vit)
    except Exception as e:
        raise WeightLoadError(f"{source}: not ViT weights of the expected layout ({e})") from e
    _check_fit(sd, vit, source, f"the clinical ViT ({branch.cfg.backbone})")
    vit.load_state_dict(sd, strict=True)
    new = [n for n, _ in branch.named_parameters() if not n.startswith("global_encoder.vit.")]
    loaded = [f"global_encoder.vit.{k}" for k in sd]
    return LoadReport(source, "clinical branch (ViT as G and L)", loaded, new, dropped)


def _load_swin_window_encoder(branch: nn.Module, source: str) -> LoadReport:
    """Swin weights (timm's ImageNet Swin-T or Swin-B, or a file of them) into a Swin window encoder or
    single-level encoder, strictly, through timm's own filter (relative-position tables resized when the
    windows differ)."""
    from timm.models.swin_transformer import checkpoint_filter_fn as swin_filter

    swin = branch.window_encoder.swin
    raw = read_state_dict(source, branch.cfg.backbone)
    try:
        sd = swin_filter(raw, swin)
    except Exception as e:
        raise WeightLoadError(f"{source}: not Swin weights of the expected layout ({e})") from e
    dropped = sorted(k for k in sd if k.startswith("head"))
    sd = {k: v for k, v in sd.items() if not k.startswith("head")}
    _check_fit(sd, swin, source, f"a Swin encoder ({branch.cfg.backbone})")
    swin.load_state_dict(sd, strict=True)
    prefix = "hrwe.encoder.swin." if branch.hrwe is not None else "single_level.swin."
    new = [n for n, _ in branch.named_parameters() if not n.startswith(prefix)]
    return LoadReport(source, "dermoscopy window encoder (Swin)", [prefix + k for k in sd], new, dropped)


_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def load_region_encoder_weights(branch: nn.Module, source: str) -> LoadReport:
    """ViT weights (timm's ``vit_small_patch16_224``, the paper's ImageNet start, or a file of a ViT of the
    same width) into the region encoder R_phi2: its blocks take the source's first blocks and its norm the
    source's final norm, key by key and shape by shape. New: R_phi2's class token and its position embedding
    over the window grid (the source's are over a patch grid). Dropped: the rest of the source."""
    region = branch.region_encoder
    raw = read_state_dict(source, "vit_small_patch16_224")
    depth = len(region.blocks)
    src_depth = len({m.group(1) for k in raw if (m := _BLOCK_KEY.match(k))})
    if src_depth < depth:
        raise WeightLoadError(
            f"{source}: {src_depth} blocks, but the region encoder has {depth} "
            "(dermoscopy.region_depth); give a ViT with at least as many blocks"
        )
    wanted = {
        k: v
        for k, v in raw.items()
        if ((m := _BLOCK_KEY.match(k)) and int(m.group(1)) < depth) or k.startswith("norm.")
    }
    expected = {k: v for k, v in region.state_dict().items() if k.startswith(("blocks.", "norm."))}
    missing = sorted(set(expected) - set(wanted))
    wrong = [
        f"{k}: {tuple(wanted[k].shape)} vs expected {tuple(expected[k].shape)}"
        for k in sorted(set(wanted) & set(expected))
        if wanted[k].shape != expected[k].shape
    ]
    unexpected = sorted(set(wanted) - set(expected))
    if missing or wrong or unexpected:
        raise WeightLoadError(
            f"{source}: does not fit the region encoder (width {region.cls_token.shape[-1]}, depth {depth}): "
            f"missing {missing[:4]}, wrong shapes {wrong[:4]}, unexpected {unexpected[:4]}"
        )
    result = region.load_state_dict(wanted, strict=False)
    if result.unexpected_keys or sorted(result.missing_keys) != ["cls_token", "pos_embed"]:
        raise WeightLoadError(f"{source}: region encoder left without weights: {result.missing_keys[:5]}")
    return LoadReport(
        source,
        "dermoscopy region encoder R_phi2",
        sorted(f"region_encoder.{k}" for k in wanted),
        ["region_encoder.cls_token", "region_encoder.pos_embed"],
        sorted(k for k in raw if k not in wanted),
    )
