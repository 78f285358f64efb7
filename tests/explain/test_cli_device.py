"""``--device`` of ``evaluate``, ``explain`` and ``cv`` (the option ``predict`` and ``serve`` share): the
device is checked before anything loads, a missing GPU is a clear error with exit code 2, and the
device named reaches the code that runs the model."""

import pytest
import torch

from remixformer.cli.main import main
from remixformer.engine.devices import resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    """Pretend two CUDA GPUs are present (only the device names are checked; nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_the_cpu_without_cuda_and_cuda_with_it(no_cuda, monkeypatch):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("AUTO") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda", "--device cuda: no CUDA GPU is available here; use --device cpu"),
        ("cuda:1", "no CUDA GPU is available here"),
        ("gpu0", "expected auto, cpu, cuda, cuda:N or mps"),
        ("meta", "got device type 'meta'"),
    ],
)
def test_a_device_that_is_not_here_is_named(no_cuda, name, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve_device(name)


def test_a_gpu_index_out_of_range_names_the_gpus_there(two_gpus):
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"has 2 CUDA GPU\(s\), cuda:0 to cuda:1"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("command", ["evaluate", "explain", "predict"])
def test_cuda_without_a_gpu_exits_with_2_before_loading(no_cuda, command, tmp_path, capsys):
    # the checkpoint does not exist: the device is checked first
    argv = [command, "--checkpoint", str(tmp_path / "none.safetensors"), "--device", "cuda"]
    argv += {"evaluate": [], "explain": ["--out", str(tmp_path)], "predict": ["--meta", "age=3"]}[command]
    assert main(argv) == 2
    assert "--device cuda: no CUDA GPU is available here" in capsys.readouterr().err


def test_cv_with_cuda_without_a_gpu_exits_with_2(no_cuda, capsys):
    assert main(["cv", "--device", "cuda", "train.max_epochs=1"]) == 2
    assert "no CUDA GPU is available here" in capsys.readouterr().err


def test_evaluate_runs_on_the_device_named(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import remixformer.evaluation.evaluate as evaluate

    seen = []
    real = evaluate.predict

    def spy(model, loader, *, device="cpu", **kwargs):
        seen.append(torch.device(device))
        return real(model, loader, device="cpu", **kwargs)  # the GPU is pretended: compute on the CPU

    monkeypatch.setattr(evaluate, "predict", spy)
    out = tmp_path / "eval"
    assert main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--out", str(out)]) == 0
    assert seen == [torch.device("cpu")] and (out / "report.md").is_file()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    # pinning memory needs a driver; that a CUDA device pins is tested in test_loader_settings.py
    monkeypatch.setattr(evaluate, "pin_memory_for", lambda device: False)
    assert (
        main(["evaluate", "--checkpoint", str(tiny_checkpoint), "--device", "cuda:1", "--out", str(out)]) == 0
    )
    assert seen[1:] == [torch.device("cuda", 1)]


def test_explain_builds_its_predictor_on_the_device_named(tiny_checkpoint, tmp_path, two_gpus, monkeypatch):
    from remixformer.serving.predictor import Predictor

    seen = []

    def stop(cls, path, device="cpu", **kwargs):
        seen.append(device)
        raise ValueError("stopped after the predictor's device was seen")

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(stop))
    argv = ["explain", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), "--device", "cuda"]
    assert main(argv) == 2
    assert seen == [torch.device("cuda")]


def test_cv_passes_the_device_to_every_folds_evaluation(two_gpus, monkeypatch, capsys):
    import remixformer.training.cv as cv

    seen = []
    monkeypatch.setattr(
        cv, "cross_validate", lambda cfg, run_dir=None, eval_device=None: seen.append(eval_device) or {}
    )
    assert main(["cv", "--device", "cuda:1", "data.n_folds=2"]) == 0
    assert main(["cv", "data.n_folds=2"]) == 0  # auto: CUDA when a GPU is present
    assert seen == [torch.device("cuda", 1), torch.device("cuda")]
