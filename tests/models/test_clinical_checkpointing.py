"""``clinical.grad_checkpointing`` recomputes the CLS-Swin blocks in backward: the same loss and gradients
as the plain path in training mode; on by default in the paper preset only, and one key turns it off."""

import pytest
import torch
import torch.nn.functional as F
from model_helpers import META_DIM, TASKS, make_batch

from remixformer import create_model
from remixformer.config import resolve
from remixformer.models import cls_swin
from remixformer.models.registry import resolve_config
from remixformer.training.config import RunConfig


def stage_flags(model) -> list[bool]:
    branch = model.branches["C"]
    return [s.grad_checkpointing for s in [*branch.global_encoder.layers, branch.local_stage]]


def loss_and_grads(model, batch, seed: int = 1):
    model.train()
    torch.manual_seed(seed)  # LSM samples its cells in training; drop path draws its masks
    logits = model(batch)["logits"]
    g = torch.Generator().manual_seed(2)
    loss = sum(
        F.cross_entropy(x, torch.randint(0, x.shape[1], (x.shape[0],), generator=g)) for x in logits.values()
    )
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("drop_path", [0.0, 0.3])
def test_checkpointed_clinical_branch_gives_the_plain_loss_and_gradients(monkeypatch, drop_path):
    calls = []
    real = cls_swin.checkpoint
    monkeypatch.setattr(cls_swin, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    build = lambda ckpt: create_model(  # noqa: E731
        "remixformer_tiny",
        "CDM",
        tasks=TASKS,
        metadata_dim=META_DIM,
        clinical={"grad_checkpointing": ckpt, "drop_path_rate": drop_path},
    )
    torch.manual_seed(0)
    plain = build(False)
    ckpt = build(True)
    ckpt.load_state_dict(plain.state_dict())
    assert stage_flags(plain) == [False] * 5 and stage_flags(ckpt) == [True] * 5
    batch = make_batch(plain, B=3)

    loss, grads = loss_and_grads(plain, batch)
    assert calls == []
    loss_ckpt, grads_ckpt = loss_and_grads(ckpt, batch)
    assert len(calls) > 0  # the blocks were checkpointed (each recomputed in backward)

    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=1e-5)
    assert grads_ckpt.keys() == grads.keys() and len(grads) == len(list(plain.parameters()))
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def test_the_paper_preset_checkpoints_the_clinical_blocks_and_the_dermoscopy_windows():
    paper = resolve_config("remixformer_paper", modalities="CDM", metadata_dim=10)
    assert paper.clinical.grad_checkpointing and paper.dermoscopy.checkpoint_windows
    for preset in ("remixformer_small", "remixformer_tiny"):  # the CPU presets keep it off
        assert not resolve_config(preset, modalities="CDM", metadata_dim=10).clinical.grad_checkpointing
    with torch.device("meta"):
        assert stage_flags(create_model("remixformer_paper", "C", tasks=3)) == [True] * 5
        off = create_model("remixformer_paper", "C", tasks=3, clinical={"grad_checkpointing": False})
    assert stage_flags(off) == [False] * 5


def test_a_run_config_turns_the_paper_presets_clinical_checkpointing_off():
    on = resolve(RunConfig, [], ["model.preset=remixformer_paper"]).model
    off = resolve(
        RunConfig, [], ["model.preset=remixformer_paper", "model.clinical.grad_checkpointing=false"]
    ).model
    for section, expected in ((on, True), (off, False)):
        cfg = resolve_config(
            section.preset, modalities=section.modalities, metadata_dim=10, clinical=section.clinical
        )
        assert cfg.clinical.grad_checkpointing is expected
        assert cfg.dermoscopy.checkpoint_windows
