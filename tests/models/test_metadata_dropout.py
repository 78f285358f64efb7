"""The metadata branch's optional dropout (``metadata.dropout``, off by default as in the paper)."""

import pytest
import torch

from remixformer import create_model


def test_metadata_dropout_is_identity_by_default_and_acts_only_in_training():
    plain = create_model("remixformer_tiny", "M", tasks=3, metadata_dim=10)
    assert isinstance(plain.branches["M"].drop, torch.nn.Identity)
    m = create_model("remixformer_tiny", "M", tasks=3, metadata_dim=10, metadata={"dropout": 0.5})
    assert isinstance(m.branches["M"].drop, torch.nn.Dropout)
    assert set(m.state_dict()) == set(plain.state_dict())  # no weights: checkpoints are unchanged
    x = {"metadata": torch.eye(10)[:4]}
    m.eval()
    torch.testing.assert_close(m(x)["logits"]["diag"], m(x)["logits"]["diag"])
    with pytest.raises(ValueError, match=r"metadata.dropout must be in \[0, 1\)"):
        create_model("remixformer_tiny", "M", tasks=3, metadata_dim=10, metadata={"dropout": 1.0})
