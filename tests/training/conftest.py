import pytest
import torch

from remixformer.data.datasets.synthetic import generate


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from several threads, and on a shared machine they wait on each other
    (a two-epoch run took 40 s with two threads, 14 s with one); the killed child processes run with
    OMP_NUM_THREADS=1 too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small synthetic data set (manifest format) with 64^2 images, shared by the training tests."""
    return generate(
        tmp_path_factory.mktemp("data") / "synthetic",
        n_cases=40,
        seed=3,
        clinical_size=64,
        dermoscopy_size=64,
    )


@pytest.fixture
def tiny_module():
    from remixformer import create_model
    from remixformer.training.config import TrainConfig
    from remixformer.training.module import RemixFormerModule

    def build(**train):
        model = create_model("remixformer_tiny", "CDM", tasks=3, metadata_dim=12)
        return RemixFormerModule(model, TrainConfig(**train))

    return build
