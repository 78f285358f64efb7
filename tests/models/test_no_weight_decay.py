"""Weight-decay grouping is declared by the modules (``no_weight_decay()``), not guessed from names."""

import pytest
import torch

from remixformer.models import create_model, list_models

# the parameter-name rule the optimizers used before the branches declared their parameters
_OLD_RULE = ("cls_token", "pos_embed", "relative_position_bias_table", "templates", "scales")


@pytest.mark.parametrize("preset", list_models())
def test_declared_no_weight_decay_matches_the_former_name_rule(preset):
    with torch.device("meta"):
        model = create_model(preset, "CDM", tasks=5, metadata_dim=17)
    declared = model.no_weight_decay()
    by_name = {n for n, p in model.named_parameters() if p.ndim <= 1 or any(k in n for k in _OLD_RULE)}
    assert declared == by_name
    for letter, branch in model.branches.items():
        assert {f"branches.{letter}.{n}" for n in branch.no_weight_decay()} <= declared
    names = dict(model.named_parameters())
    assert any("templates" in n for n in declared) and all(names[n].ndim >= 1 for n in declared)
