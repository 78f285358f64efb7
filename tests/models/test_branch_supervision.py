"""fusion.branch_supervision: a training-only task head on each branch's embedding, its losses weighted
into the training loss (not in the paper; off by default)."""

import pytest
import torch

from remixformer import keys
from remixformer.models.config import FusionConfig
from remixformer.training.config import TrainConfig
from remixformer.training.module import RemixFormerModule, task_losses


def _batch(model, B=4):
    g = torch.Generator().manual_seed(1)
    return {
        keys.CASE_ID: [f"c{i}" for i in range(B)],
        keys.CLINICAL: torch.randn(B, 3, 64, 64, generator=g),
        keys.present_key(keys.CLINICAL): torch.tensor([True, False, True, True]),
        keys.DERMOSCOPY: torch.randn(B, 3, 64, 64, generator=g),
        keys.present_key(keys.DERMOSCOPY): torch.tensor([True, True, False, True]),
        keys.METADATA: torch.randn(B, model.config.metadata_dim, generator=g),
        keys.TARGETS: {"diag": torch.tensor([0, 1, 4, 2]), "pn": torch.tensor([2, 0, 1, keys.IGNORE_INDEX])},
    }


def test_each_branch_gets_a_head_on_the_rows_that_have_its_modality(tiny):
    model = tiny("CDM", fusion={"branch_supervision": 0.5}).train()
    assert sorted(model.aux_heads) == ["branch_C", "branch_D", "branch_M"]
    assert model.aux_weights == {"branch_C": 0.5, "branch_D": 0.5, "branch_M": 0.5}
    batch = _batch(model)
    out = model(batch)
    expected_rows = {"branch_C": [0, 2, 3], "branch_D": [0, 1, 3], "branch_M": [0, 1, 2, 3]}
    assert sorted(out[keys.AUX_LOGITS]) == sorted(expected_rows)
    for name, rows in expected_rows.items():
        logits, got = out[keys.AUX_LOGITS][name]
        assert got.tolist() == rows
        assert logits["diag"].shape == (len(rows), 5) and logits["pn"].shape == (len(rows), 3)
    # the head reads the branch's own embedding of those rows (the metadata branch: deterministic)
    embedding = model.branches["M"](batch[keys.METADATA]).embedding
    torch.testing.assert_close(
        out[keys.AUX_LOGITS]["branch_M"][0]["diag"], model.aux_heads["branch_M"](embedding)["diag"]
    )
    assert keys.AUX_LOGITS not in model.eval()(batch)  # training only


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_the_training_loss_adds_the_weighted_branch_losses(tiny):
    model = tiny("CDM", fusion={"branch_supervision": 0.5})
    module = RemixFormerModule(model, TrainConfig()).train()
    batch = _batch(model)
    torch.manual_seed(3)
    loss = module.training_step(batch, 0)
    torch.manual_seed(3)
    out = model(batch)
    expected, _ = task_losses(out[keys.LOGITS], batch[keys.TARGETS], model.tasks)
    for logits, rows in out[keys.AUX_LOGITS].values():
        aux, _ = task_losses(logits, {k: v[rows] for k, v in batch[keys.TARGETS].items()}, model.tasks)
        assert aux > 0
        expected = expected + 0.5 * aux
    torch.testing.assert_close(loss, expected)


def test_off_by_default_and_for_a_single_modality(tiny):
    assert not tiny("CDM").aux_heads
    assert not tiny("D", fusion={"branch_supervision": 1.0}).aux_heads  # its fused head is the branch's


def test_a_negative_weight_is_refused():
    with pytest.raises(ValueError, match="fusion.branch_supervision must be >= 0"):
        FusionConfig(branch_supervision=-0.1)


def test_the_training_only_heads_are_not_counted_as_model_parameters(tiny):
    plain, supervised = tiny("CDM"), tiny("CDM", fusion={"branch_supervision": 1.0})
    assert supervised.num_parameters() == plain.num_parameters()
    assert sum(p.numel() for p in supervised.parameters()) > plain.num_parameters()
