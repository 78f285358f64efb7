import pytest
from model_helpers import META_DIM, TASKS

from remixformer import create_model


@pytest.fixture
def tiny():
    def build(modalities="CDM", **kw):
        return create_model(
            "remixformer_tiny", modalities=modalities, tasks=TASKS, metadata_dim=META_DIM, **kw
        )

    return build
