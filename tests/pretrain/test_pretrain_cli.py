"""``remixformer pretrain``: arguments, configs in configs/pretrain, a one-epoch run, user errors."""

from pathlib import Path

import pytest
import yaml

from remixformer.cli.main import main
from remixformer.cli.pretrain import split_images_and_overrides
from remixformer.config import ConfigError, dump_yaml, resolve
from remixformer.pretrain.config import PretrainConfig, resolve_sizes

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"


def test_overrides_after_images_are_recognised(tmp_path):
    odd = tmp_path / "a=b"
    odd.mkdir()
    images, overrides = split_images_and_overrides(["data/x", "optim.epochs=3", str(odd), "seed=1"])
    assert images == ["data/x", str(odd)] and overrides == ["optim.epochs=3", "seed=1"]


@pytest.mark.parametrize("name", ["dino_paper.yaml", "dino_small_cpu.yaml"])
def test_shipped_configs_resolve(name):
    cfg = resolve_sizes(resolve(PretrainConfig, [CONFIGS / name]))
    if name == "dino_paper.yaml":
        assert cfg.backbone.preset == "remixformer_paper" and cfg.optim.batch_size == 256
        assert (cfg.crops.global_size, cfg.crops.local_size) == (256, 96)
        assert (cfg.dino.student_temp, cfg.dino.warmup_teacher_temp, cfg.dino.teacher_temp) == (
            0.1,
            0.04,
            0.07,
        )
        assert cfg.dino.warmup_teacher_temp_epochs == 30 and tuple(cfg.crops.jitter) == (0.4, 0.4, 0.2, 0.1)
    else:
        assert cfg.backbone.preset == "remixformer_small" and cfg.windows.window_size == 64


def test_bad_config_values_raise_with_the_key():
    with pytest.raises(ConfigError, match="native_fraction"):
        resolve(PretrainConfig, [], ["windows.native_fraction=2"])
    with pytest.raises(ConfigError, match="unknown config key"):
        resolve(PretrainConfig, [], ["optim.lrr=0.1"])
    with pytest.raises(ValueError, match="multiple of the backbone's patch size"):
        resolve_sizes(resolve(PretrainConfig, [], ["crops.local_size=100"]))
    with pytest.raises(ValueError, match="unknown model"):
        resolve_sizes(resolve(PretrainConfig, [], ["backbone.preset=nope"]))


def test_cli_runs_one_epoch_and_reports(image_dir, tiny_cfg, tmp_path, capsys):
    cfg_file = tmp_path / "tiny.yaml"
    dump_yaml(tiny_cfg(), cfg_file)
    code = main(
        [
            "-q",
            "pretrain",
            "-c",
            str(cfg_file),
            "--run-dir",
            str(tmp_path / "run"),
            "--images",
            str(image_dir),
            "optim.epochs=1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "48 windows from 12 images (1 unreadable files skipped" in out
    assert "teacher_backbone.safetensors" in out and "model.dermoscopy.pretrained" in out
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["optim"]["epochs"] == 1 and stored["windows"]["window_size"] == 32
    assert (tmp_path / "run" / "windows.csv").exists() and (tmp_path / "run" / "summary.json").exists()


def test_cli_user_errors_exit_2(tmp_path, capsys):
    assert main(["pretrain"]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["pretrain", "--images", str(tmp_path / "missing")]) == 2
    assert "image folder not found" in capsys.readouterr().err
