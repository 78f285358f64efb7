"""Which Lightning strategy a run gets: DDP that finds unused parameters whenever more than one process
may run, whatever form ``devices`` takes, with several nodes, and under torchrun, SLURM or MPI."""

import logging

import pytest
import torch

from remixformer.engine import distributed, trainer
from remixformer.engine.distributed import PROCESS_COUNT_VARIABLES, device_count, wants_ddp
from remixformer.engine.trainer import FIND_UNUSED, TrainerConfig, build_trainer, ddp_strategy


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch):
    """This test process is not one of a launcher's processes, whatever the machine it runs on."""
    for name in PROCESS_COUNT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def gpus(monkeypatch):
    """Pretend the machine has ``n`` CUDA GPUs."""

    def set_count(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)

    return set_count


@pytest.mark.parametrize(
    ("devices", "accelerator", "expected"),
    [
        ("auto", "gpu", 4),
        ("auto", "cuda", 4),
        ("auto", "auto", 4),
        (-1, "gpu", 4),
        ("-1", "auto", 4),
        (2, "gpu", 2),
        ("2", "gpu", 2),
        (" 3 ", "gpu", 3),
        ("0,1", "gpu", 2),
        ("1,", "gpu", 1),
        ("0, 2, 3", "gpu", 3),
        ([0, 1], "gpu", 2),
        ((3,), "gpu", 1),
        (1, "gpu", 1),
        ("auto", "cpu", 1),
        (2, "cpu", 2),
        ("2", "cpu", 2),
        ("auto", "mps", 1),
    ],
)
def test_device_count_parses_every_form_of_devices_as_lightning_does(gpus, devices, accelerator, expected):
    gpus(4)
    assert device_count(devices, accelerator) == expected


def test_auto_without_cuda_is_one_device_and_an_unknown_accelerator_is_not_counted(gpus):
    gpus(0)
    assert device_count("auto", "auto") == 1
    assert device_count(-1, "auto") == 1
    assert device_count("auto", "tpu") is None
    assert device_count(8, "tpu") == 8


@pytest.mark.parametrize("bad", ["two", "", 1.5, None, True])
def test_device_count_names_the_forms_it_expects(bad):
    with pytest.raises(ValueError, match="devices: expected"):
        device_count(bad, "gpu")


@pytest.mark.parametrize(
    ("devices", "num_nodes", "expected"),
    [
        ("auto", 1, True),  # all of the machine's four GPUs
        (-1, 1, True),
        ("-1", 1, True),
        ("0,1", 1, True),
        ([0, 1], 1, True),
        ("2", 1, True),
        (2, 1, True),
        (1, 1, False),
        ("1", 1, False),
        ("3,", 1, False),
        (1, 2, True),  # one GPU on each of two nodes
    ],
)
def test_ddp_is_wanted_whenever_more_than_one_process_may_run(gpus, devices, num_nodes, expected):
    gpus(4)
    assert wants_ddp(devices, num_nodes, "gpu") is expected
    strategy = ddp_strategy(TrainerConfig(accelerator="gpu", devices=devices, num_nodes=num_nodes))
    assert strategy == (FIND_UNUSED if expected else "auto")


def test_one_gpu_machine_with_auto_is_one_process(gpus):
    gpus(1)
    assert not wants_ddp("auto", 1, "auto")
    assert ddp_strategy(TrainerConfig(accelerator="auto", devices="auto")) == "auto"


@pytest.mark.parametrize("variable", PROCESS_COUNT_VARIABLES)
def test_a_launcher_or_scheduler_with_several_processes_wants_ddp(gpus, monkeypatch, variable):
    gpus(1)
    monkeypatch.setenv(variable, "1")
    assert not wants_ddp(1, 1, "gpu")
    monkeypatch.setenv(variable, "8")
    assert wants_ddp(1, 1, "gpu")
    assert ddp_strategy(TrainerConfig(accelerator="gpu", devices=1)) == FIND_UNUSED


def test_slurm_job_with_several_tasks_wants_ddp_even_with_devices_auto_on_cpu(monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert ddp_strategy(TrainerConfig(accelerator="cpu", devices="auto")) == FIND_UNUSED


def test_an_explicit_strategy_is_kept_and_pretraining_gets_plain_ddp(gpus):
    gpus(4)
    assert ddp_strategy(TrainerConfig(accelerator="gpu", devices=4, strategy="fsdp")) == "fsdp"
    assert (
        ddp_strategy(TrainerConfig(accelerator="gpu", devices="0,1"), find_unused_parameters=False) == "ddp"
    )


def _find_unused(built) -> bool:
    return bool(getattr(built.strategy, "_ddp_kwargs", {}).get("find_unused_parameters"))


@pytest.mark.parametrize("devices", [2, "2"])
def test_built_trainer_on_two_cpu_processes_finds_unused_parameters(tmp_path, devices):
    # "2" (a string, as `train.devices='2'` gives) got plain DDP before: only an int counted
    built = build_trainer(tmp_path, [], TrainerConfig(accelerator="cpu", devices=devices), max_epochs=1)
    assert built.world_size == 2 and _find_unused(built)


def test_built_trainer_on_one_cpu_is_not_distributed(tmp_path):
    built = build_trainer(tmp_path, [], TrainerConfig(accelerator="cpu", devices="auto"), max_epochs=1)
    assert built.world_size == 1 and not _find_unused(built)


def test_lightning_resolving_more_processes_than_foreseen_gets_find_unused_too(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(trainer, "wants_ddp", lambda *a, **k: False)  # a devices form wants_ddp misreads
    with caplog.at_level(logging.WARNING, logger="remixformer.engine.trainer"):
        built = build_trainer(tmp_path, [], TrainerConfig(accelerator="cpu", devices=2), max_epochs=1)
    assert built.world_size == 2 and _find_unused(built)
    assert "rebuilding the trainer with ddp_find_unused_parameters_true" in caplog.text


def test_launched_processes_reads_the_largest_count(monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("PMI_SIZE", "not a number")
    assert distributed.launched_processes() == 4
