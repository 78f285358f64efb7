"""Loader settings chosen for the device: pinned memory when batches go to a CUDA device (never for the
CPU), workers that persist from epoch to epoch when there are workers; for a run's training and
validation loaders, evaluation, and DINO pretraining's window loader."""

from types import SimpleNamespace

import pytest
import torch

from remixformer.data.loaders import epoch_loader, pin_memory_for
from remixformer.pretrain.module import WindowDataModule


def fake_trainer(device: str) -> SimpleNamespace:
    """What the data modules read of a Lightning trainer: its device, rank and world size."""
    return SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device(device)), global_rank=0, world_size=1
    )


@pytest.mark.parametrize(
    ("device", "pinned"),
    [
        ("cuda", True),
        ("cuda:1", True),
        (torch.device("cuda", 0), True),
        ("cpu", False),
        ("mps", False),
        (None, False),
    ],
)
def test_pin_memory_only_for_cuda(device, pinned):
    assert pin_memory_for(device) is pinned


@pytest.mark.parametrize(("num_workers", "persistent"), [(0, False), (1, True), (2, True)])
def test_epoch_loader_workers_persist_when_there_are_workers(num_workers, persistent):
    loader = epoch_loader(list(range(8)), 2, num_workers=num_workers, pin_memory=True)
    assert loader.persistent_workers is persistent and loader.pin_memory is True
    assert epoch_loader(list(range(8)), 2).pin_memory is False


def test_persistent_workers_read_the_epochs_fresh_workers_read():
    """The epoch travels with each index: a worker kept from epoch 0 reads epoch 1's order and items."""

    class Items:
        def __init__(self) -> None:
            self.epoch = 0

        def __len__(self) -> int:
            return 6

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"row": torch.tensor([i, self.epoch])}

    def epochs(num_workers: int) -> list[list[list[int]]]:
        loader = epoch_loader(Items(), 3, shuffle=True, seed=4, num_workers=num_workers)
        out = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            out.append([row for batch in loader for row in batch["row"].tolist()])
        return out

    kept = epochs(1)
    assert kept == epochs(0)
    assert [row[1] for row in kept[1]] == [1] * 6 and kept[0] != kept[1]


@pytest.fixture(scope="module")
def run_module(synth_root, tmp_path_factory):
    from train_helpers import tiny_config

    from remixformer.data.registry import load_dataset
    from remixformer.data.splits import splits_from_config
    from remixformer.training.datamodule import RemixDataModule
    from remixformer.training.run import build_model_for

    def build(num_workers: int) -> RemixDataModule:
        cfg = tiny_config(synth_root, tmp_path_factory.mktemp("run"), f"data.num_workers={num_workers}")
        table = load_dataset(cfg.data)
        return RemixDataModule(
            cfg, table, splits_from_config(table, cfg.data), build_model_for(cfg, table).config
        )

    return build


@pytest.mark.parametrize(("device", "pinned"), [("cuda", True), ("cpu", False)])
def test_a_runs_loaders_pin_memory_when_training_on_cuda(run_module, device, pinned):
    dm = run_module(num_workers=2)
    dm.trainer = fake_trainer(device)
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        assert loader.pin_memory is pinned and loader.persistent_workers is True
    dm = run_module(num_workers=0)
    dm.trainer = fake_trainer(device)
    assert dm.train_dataloader().persistent_workers is False


@pytest.mark.parametrize(("device", "pinned"), [("cuda:0", True), ("cpu", False)])
def test_the_window_loader_pins_memory_when_pretraining_on_cuda(device, pinned):
    dm = WindowDataModule(list(range(8)), batch_size=2, seed=0, num_workers=2)
    dm.trainer = fake_trainer(device)
    loader = dm.train_dataloader()
    assert loader.pin_memory is pinned and loader.persistent_workers is True


def test_evaluation_pins_memory_for_a_cuda_device(monkeypatch):
    import remixformer.evaluation.evaluate as evaluate

    seen = []

    def stop(*args, pin_memory=False, **kwargs):
        seen.append(pin_memory)
        raise RuntimeError("stopped after the loader's settings were seen")

    monkeypatch.setattr(evaluate, "evaluation_loader", stop)
    monkeypatch.setattr(evaluate, "align_to_model", lambda table, model: table)
    monkeypatch.setattr(evaluate, "answerable", lambda table, indices, modalities: (indices, []))
    model = SimpleNamespace(config=SimpleNamespace(modalities="CD"))
    table = SimpleNamespace(name="t")
    for device in ("cuda", "cpu"):
        with pytest.raises(RuntimeError, match="stopped"):
            evaluate.predict_cases(model, table, [0, 1], device=device)
    assert seen == [True, False]
