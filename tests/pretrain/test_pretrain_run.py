"""Short pretraining runs through the Lightning machinery: the loss falls, the teacher moves only by EMA,
the last layer is frozen in the first epoch, resume is exact, and the export loads into T_phi1."""

import json

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from remixformer import create_model
from remixformer.models.weights import WeightLoadError
from remixformer.pretrain.export import read_export_info
from remixformer.pretrain.run import pretrain


class Interrupt(L.Callback):
    """Stops the run with an error at the end of an epoch, before that epoch's checkpoint is written
    (user callbacks run before the run's checkpoint; the killed processes are in test_pretrain_kill)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("simulated crash")


class EMASpy(L.Callback):
    """Checks, step by step, that the teacher has no gradient and moves exactly by EMA, and records the
    head's last layer at each epoch's start and end."""

    def __init__(self) -> None:
        self.steps = 0
        self.last_layer: dict[str, torch.Tensor] = {}

    def on_train_epoch_start(self, trainer, pl_module):
        self.last_layer[f"start{trainer.current_epoch}"] = (
            pl_module.meta.student.head.last_layer.direction.clone()
        )

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        meta = pl_module.meta
        assert all(p.grad is None for p in meta.teacher.parameters())
        assert all(not p.requires_grad for p in meta.teacher.parameters())
        self.step = trainer.global_step
        self.before = [p.detach().clone() for p in meta.teacher.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        m = pl_module.schedules.at(self.step)["momentum"]
        meta = pl_module.meta
        for t0, t, s in zip(self.before, meta.teacher.parameters(), meta.student.parameters()):
            torch.testing.assert_close(t, m * t0 + (1 - m) * s.detach())
        self.steps += 1

    def on_train_epoch_end(self, trainer, pl_module):
        self.last_layer[f"end{trainer.current_epoch}"] = (
            pl_module.meta.student.head.last_layer.direction.clone()
        )


def test_a_short_run_lowers_the_loss(image_dir, tiny_cfg, tmp_path):
    """With an EMA teacher, the first hundred steps of a from-scratch run are dominated by the centre
    moving the teacher's output from its initial single prototype towards uniform (DINO's own logs show
    the loss rising before it falls); with the teacher held still (momentum 1) and a centre without
    memory the objective is stationary, and the run must make the student predict the teacher across
    views."""
    cfg = tiny_cfg(
        "optim.epochs=5",
        "optim.lr=0.05",
        "dino.momentum_teacher=1.0",
        "dino.center_momentum=0.0",
        windows={"images": [str(image_dir)]},
    )
    summary = pretrain(cfg, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["pretrain/loss"] for r in rows]
    assert len(losses) == 5 and all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.9 * losses[0]
    assert summary["unreadable_files"] == 1 and summary["windows"] == 48
    for key in (
        "pretrain/lr",
        "pretrain/teacher_temp",
        "pretrain/student_temp",
        "pretrain/momentum",
        "pretrain/wd",
        "pretrain/teacher_entropy",
        "pretrain/teacher_entropy_ratio",
    ):
        assert key in rows[0]
    assert list((tmp_path / "run" / "logs" / "tensorboard").glob("events.out.tfevents.*"))


def test_teacher_moves_only_by_ema_and_last_layer_is_frozen_first(image_dir, tiny_cfg, tmp_path):
    spy = EMASpy()
    cfg = tiny_cfg("optim.lr=0.05", windows={"images": [str(image_dir)]})
    pretrain(cfg, tmp_path / "run", callbacks=[spy])
    assert spy.steps == 2 * 6
    assert torch.equal(spy.last_layer["start0"], spy.last_layer["end0"])  # frozen in the first epoch
    assert not torch.equal(spy.last_layer["start1"], spy.last_layer["end1"])


def test_resume_is_exact_and_the_export_loads_strictly(image_dir, tiny_cfg, tmp_path):
    cfg = tiny_cfg(windows={"images": [str(image_dir)]})
    straight = pretrain(cfg, tmp_path / "straight")
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(cfg, tmp_path / "resumed", callbacks=[Interrupt(epoch=1)])  # epoch 0's state is complete
    with pytest.raises(ValueError, match="already holds a run"):
        pretrain(cfg, tmp_path / "resumed")
    with pytest.raises(ValueError, match="optim.epochs"):
        pretrain(
            tiny_cfg("optim.epochs=3", windows={"images": [str(image_dir)]}),
            tmp_path / "resumed",
            resume=True,
        )
    cfg.windows.images = []  # the stored window index is used
    resumed = pretrain(cfg, tmp_path / "resumed", resume=True)
    assert resumed["global_step"] == straight["global_step"] == 12
    a, b = load_file(straight["export"]), load_file(resumed["export"])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    info = read_export_info(straight["export"])
    assert info["preset"] == "remixformer_tiny" and info["architecture"]["embed_dim"] == 16
    assert info["global_step"] == 12
    model = create_model("remixformer_tiny", "D", tasks=3, dermoscopy={"pretrained": straight["export"]})
    vit = model.branches["D"].window_encoder.vit
    for k, v in vit.state_dict().items():
        assert torch.equal(v, a[k]), k
    with pytest.raises(WeightLoadError, match="does not fit"):
        create_model(
            "remixformer_small",
            "D",
            tasks=3,
            dermoscopy={"pretrained": straight["export"], "conv_stem": False},
        )
    # the small preset's window encoder has a convolutional stem: the message names the switch
    with pytest.raises(WeightLoadError, match=r"convolutional stem \(dermoscopy.conv_stem=true"):
        create_model("remixformer_small", "D", tasks=3, dermoscopy={"pretrained": straight["export"]})
