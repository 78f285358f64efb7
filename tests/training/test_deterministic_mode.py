"""``deterministic: true``: required deterministic algorithms on the CPU, warn-only on CUDA (some of the
model's operations have no deterministic CUDA kernel), with cuBLAS's workspace setting."""

import logging

import pytest
import torch

from remixformer.engine import trainer
from remixformer.engine.trainer import (
    CUDA_NONDETERMINISTIC_OPS,
    DeterministicMode,
    TrainerConfig,
    apply_deterministic_mode,
    build_trainer,
    deterministic_mode,
)

CUBLAS = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


@pytest.fixture
def cuda(monkeypatch):
    """Pretend CUDA is (or is not) available."""

    def set_available(available: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)

    return set_available


@pytest.fixture
def restore_torch_flags():
    """build_trainer sets torch's global deterministic flags (through Lightning): put them back."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


@pytest.mark.parametrize(
    ("accelerator", "cuda_available", "lightning", "env"),
    [
        ("cpu", False, True, {}),
        ("cpu", True, True, {}),  # a CPU run on a GPU machine: deterministic=True exactly as before
        ("gpu", True, "warn", CUBLAS),
        ("gpu", False, True, {}),  # Lightning's "gpu" without CUDA is not CUDA (MPS, or an error)
        ("cuda", True, "warn", CUBLAS),
        ("cuda", False, "warn", CUBLAS),  # asked for CUDA: Lightning will use it or stop
        ("CUDA", True, "warn", CUBLAS),
        ("auto", True, "warn", CUBLAS),  # Lightning's auto picks CUDA when it is there
        ("auto", False, True, {}),
        ("mps", False, True, {}),
    ],
)
def test_deterministic_becomes_warn_only_on_cuda_and_stays_required_elsewhere(
    cuda, accelerator, cuda_available, lightning, env
):
    cuda(cuda_available)
    mode = deterministic_mode(True, accelerator)
    assert mode.lightning == lightning and type(mode.lightning) is type(lightning)
    assert mode.env == env
    assert mode.cuda is (lightning == "warn")


@pytest.mark.parametrize("accelerator", ["cpu", "gpu", "cuda", "auto"])
@pytest.mark.parametrize("cuda_available", [True, False])
def test_not_deterministic_is_false_everywhere(cuda, accelerator, cuda_available):
    cuda(cuda_available)
    assert deterministic_mode(False, accelerator) == DeterministicMode(False, {}, cuda=False)


def test_cuda_mode_sets_the_cublas_workspace_unless_set_and_warns_once_naming_the_operations(
    monkeypatch, caplog
):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with caplog.at_level(logging.WARNING, logger="remixformer.engine.trainer"):
        apply_deterministic_mode(DeterministicMode("warn", dict(CUBLAS), cuda=True))
    assert trainer.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "warn-only" in text and "F.interpolate(mode='bicubic')" in text
    assert "resample_abs_pos_embed" in text and "relative_position_bias" in text
    assert all(op in text for op in CUDA_NONDETERMINISTIC_OPS)

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the user's own value stays
    apply_deterministic_mode(DeterministicMode("warn", dict(CUBLAS), cuda=True))
    assert trainer.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_cpu_mode_sets_nothing_and_says_nothing(monkeypatch, caplog):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with caplog.at_level(logging.WARNING, logger="remixformer.engine.trainer"):
        apply_deterministic_mode(DeterministicMode(True))
    assert "CUBLAS_WORKSPACE_CONFIG" not in trainer.os.environ and not caplog.records


@pytest.mark.usefixtures("restore_torch_flags")
def test_built_trainer_on_the_cpu_requires_deterministic_algorithms(tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # Lightning sets it: undone after the test
    build_trainer(tmp_path, [], TrainerConfig(accelerator="cpu", deterministic=True), max_epochs=1)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()


@pytest.mark.usefixtures("restore_torch_flags")
def test_built_trainer_passes_warn_to_lightning_when_the_mode_says_cuda(tmp_path, monkeypatch, caplog):
    # the wiring, without a GPU: the decision is pretended, the Trainer itself runs on the CPU
    monkeypatch.setattr(trainer, "deterministic_mode", lambda d, a: DeterministicMode("warn", CUBLAS, True))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with caplog.at_level(logging.WARNING, logger="remixformer.engine.trainer"):
        build_trainer(tmp_path, [], TrainerConfig(accelerator="cpu", deterministic=True), max_epochs=1)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert trainer.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert "no deterministic CUDA kernel" in caplog.text
