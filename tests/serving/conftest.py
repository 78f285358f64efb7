"""Fixtures of the serving tests: tiny untrained checkpoints with a metadata schema, images as bytes."""

import pytest
from serving_helpers import SCHEMA, TASKS, png_bytes

from remixformer import create_model
from remixformer.models.checkpoint import save_model
from remixformer.serving import Predictor


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("serving_ckpt")


@pytest.fixture(scope="session")
def make_checkpoint(ckpt_dir):
    """Path of a tiny untrained checkpoint with the given modalities (built once per session)."""
    made = {}

    def build(modalities="CDM"):
        if modalities not in made:
            model = create_model(
                "remixformer_tiny", modalities, tasks=TASKS, metadata_schema=SCHEMA.to_dict()
            )
            made[modalities] = save_model(model, ckpt_dir / f"tiny_{modalities}.safetensors")
        return made[modalities]

    return build


@pytest.fixture(scope="session")
def predictor(make_checkpoint):
    return Predictor.from_checkpoint(make_checkpoint("CDM"))


@pytest.fixture
def png():
    return png_bytes
