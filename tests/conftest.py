"""Shared test settings (deterministic, single-threaded-friendly, tiny sizes) and shared fixtures: a tiny
synthetic set and a tiny CDM checkpoint of it trained on nothing."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """The CLI's ``main()`` configures the root logger on the stream pytest captured for that test;
    put the root handlers back so later tests do not log into a closed stream."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A 24-case synthetic set (64^2 images) in the manifest format."""
    from remixformer.data.datasets.synthetic import generate

    return generate(
        tmp_path_factory.mktemp("explain_data") / "synthetic",
        n_cases=24,
        seed=5,
        clinical_size=64,
        dermoscopy_size=64,
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_synth):
    """A randomly initialised ``remixformer_tiny`` CDM model of the synthetic set's classes and schema,
    saved with the data set in its extras (as training does)."""
    from remixformer import create_model
    from remixformer.data.config import DataConfig
    from remixformer.data.registry import load_dataset
    from remixformer.models.checkpoint import save_model

    torch.manual_seed(0)
    table = load_dataset(DataConfig(dataset="synthetic", root=str(tiny_synth)))
    model = create_model(
        "remixformer_tiny",
        "CDM",
        tasks=[table.tasks[0]],
        metadata_schema=table.schema.to_dict(),
        clinical_size=64,
        crop_size=32,  # a crop as large as an LSM cell (64 / 2): each crop covers its cell
    )
    path = tmp_path_factory.mktemp("explain_ckpt") / "tiny.safetensors"
    save_model(model, path, extra={"data": {"dataset": "synthetic", "root": str(tiny_synth)}})
    return path
