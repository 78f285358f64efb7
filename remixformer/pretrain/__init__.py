"""DINO self-supervised pretraining of the window encoder T_phi1 (paper section III-C, IV-B).

``remixformer pretrain --images DIR ...`` or :func:`remixformer.pretrain.run.pretrain`; the teacher
backbone is exported as ``teacher_backbone.safetensors`` for ``model.dermoscopy.pretrained``.
See ``docs/pretraining.md``.
"""

from remixformer.pretrain.config import PretrainConfig, resolve_sizes

__all__ = ["PretrainConfig", "resolve_sizes"]
