"""Pieces of training: losses, schedule, modality dropout, epoch-seeded sampling, checkpoint IO."""

import math

import torch

from remixformer.data.sampling import EpochSampler
from remixformer.engine.checkpoint_io import SafetensorsCheckpointIO
from remixformer.tasks import TaskSpec
from remixformer.training.module import WarmupCosine, task_losses

TASKS = (TaskSpec("diag", ("a", "b", "c")), TaskSpec("attrs", ("x", "y"), kind="multi", weight=0.5))


def test_task_losses_sum_cross_entropies_and_skip_unknown_labels():
    logits = {"diag": torch.randn(4, 3), "attrs": torch.randn(4, 2)}
    y = torch.tensor([0, -1, 2, -1])
    a = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [float("nan"), float("nan")], [1.0, 0.0]])
    total, parts = task_losses(logits, {"diag": y, "attrs": a}, TASKS)
    ce = torch.nn.functional.cross_entropy(logits["diag"][[0, 2]], y[[0, 2]])
    known = ~torch.isnan(a)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits["attrs"][known], a[known])
    torch.testing.assert_close(total, ce + 0.5 * bce)
    assert set(parts) == {"diag", "attrs"}
    none, parts = task_losses(
        logits, {"diag": torch.full((4,), -1), "attrs": torch.full((4, 2), float("nan"))}, TASKS
    )
    assert none.item() == 0.0 and parts == {}


def test_warmup_cosine_endpoints():
    f = WarmupCosine(total_steps=100, warmup_steps=10, floor=0.1)
    assert f(0) == 0.1  # (0 + 1) / 10
    assert f(9) == 1.0
    assert math.isclose(f(10), 1.0)
    assert math.isclose(f(100), 0.1)
    assert f(55) < f(20)
    assert WarmupCosine(10, cosine=False)(7) == 1.0


def test_modality_dropout_hides_modalities_but_never_all(tiny_module):
    module = tiny_module(modality_dropout=0.9)
    B = 64
    batch = {
        "clinical": torch.zeros(B, 3, 64, 64),
        "dermoscopy": torch.zeros(B, 3, 64, 64),
        "metadata": torch.zeros(B, 12),
        "case_id": [str(i) for i in range(B)],
    }
    torch.manual_seed(0)
    out = module._drop_modalities(batch)
    masks = torch.stack([out[k] for k in ("clinical_present", "dermoscopy_present", "metadata_present")])
    assert masks.any(0).all()  # every case keeps at least one modality
    assert (~masks).sum() > B  # and many were hidden


def test_epoch_sampler_is_a_function_of_seed_and_epoch_and_shards_by_rank():
    s = EpochSampler(10, seed=3)
    s.set_epoch(1)
    a = list(s)
    s.set_epoch(2)
    b = list(s)
    s.set_epoch(1)
    assert list(s) == a and [i for i, _ in a] != [i for i, _ in b]
    assert all(e == 1 for _, e in a)
    shards = [EpochSampler(10, seed=3, rank=r, world_size=3) for r in range(3)]
    for sh in shards:
        sh.set_epoch(1)
    seen = [i for sh in shards for i, _ in sh]
    assert len(seen) == 12 and set(seen) == set(range(10))  # padded to equal length, all covered
    assert all(len(sh) == 4 for sh in shards)


def test_training_state_io_round_trips_a_lightning_like_checkpoint(tmp_path):
    io = SafetensorsCheckpointIO()
    ckpt = {
        "epoch": 1,
        "global_step": 7,
        "state_dict": {"w": torch.randn(2, 2)},
        "optimizer_states": [
            {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.99)}]}
        ],
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 2}}}},
    }
    io.save_checkpoint(ckpt, tmp_path / "s.safetensors")
    back = io.load_checkpoint(tmp_path / "s.safetensors")
    assert back["optimizer_states"][0]["param_groups"][0]["betas"] == (0.9, 0.99)
    torch.testing.assert_close(back["state_dict"]["w"], ckpt["state_dict"]["w"])
    io.remove_checkpoint(tmp_path / "s.safetensors")
    assert not (tmp_path / "s.safetensors").exists()
