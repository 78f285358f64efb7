"""The model section checked as the config resolves, one name per thing (earlier names still read, with
a FutureWarning), and `cv` taking its folds from the config unless `--folds` visibly overrides them."""

import warnings

import pytest

from remixformer.cli.main import main
from remixformer.config import ConfigError, resolve
from remixformer.training.config import RunConfig


def _no_data(monkeypatch):
    import remixformer.data.registry as registry

    def refuse(*args, **kwargs):
        raise AssertionError("the data set was loaded before the config was checked")

    monkeypatch.setattr(registry, "load_dataset", refuse)
    monkeypatch.setattr(registry, "load_cases", refuse)


def test_a_typo_in_a_model_section_names_the_key_and_the_valid_keys():
    with pytest.raises(ConfigError) as e:
        resolve(RunConfig, [], ["model.clinical.num_crop=3"])
    assert "model.clinical.num_crop" in str(e.value) and "num_crops" in str(e.value)
    with pytest.raises(ConfigError, match=r"model\.dermoscopy\.msta: expected true or false"):
        resolve(RunConfig, [], ["model.dermoscopy.msta=maybe"])
    with pytest.raises(ConfigError, match=r"model\.fusion\.dimm"):
        resolve(RunConfig, [], ["model.fusion.dimm=8"])
    with pytest.raises(ConfigError, match=r"model\.preset: unknown model preset 'remixformer_huge'"):
        resolve(RunConfig, [], ["model.preset=remixformer_huge"])
    # sizes that do not fit together are refused with the numbers, also before any data loads
    with pytest.raises(ConfigError, match=r"clinical\.crop_size 128 is larger than clinical\.image_size 64"):
        resolve(RunConfig, [], ["model.preset=remixformer_tiny", "model.clinical.crop_size=128"])
    # values are converted to the fields' types
    cfg = resolve(RunConfig, [], ["model.preset=remixformer_tiny", "model.clinical.mlp_ratio=2"])
    assert cfg.model.clinical == {"mlp_ratio": 2.0} and isinstance(cfg.model.clinical["mlp_ratio"], float)


def test_train_refuses_a_typo_before_any_data_set_loads(monkeypatch, tmp_path, capsys):
    _no_data(monkeypatch)
    code = main(
        [
            "train",
            "model.preset=remixformer_tiny",
            "model.clinical.num_crop=3",
            "data.dataset=manifest",
            f"data.root={tmp_path / 'nowhere'}",
            f"output_dir={tmp_path}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "model.clinical.num_crop" in err and "num_crops" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("old", "section", "key"),
    [
        ("clinical_weights", "clinical", "pretrained"),
        ("window_encoder_weights", "dermoscopy", "pretrained"),
        ("region_encoder_weights", "dermoscopy", "region_pretrained"),
    ],
)
def test_the_earlier_weight_keys_still_work_with_a_warning_naming_the_new_key(old, section, key):
    with pytest.warns(FutureWarning, match=rf"model\.{old} is deprecated.*use model\.{section}\.{key}"):
        cfg = resolve(RunConfig, [], [f"model.{old}=weights.safetensors"])
    assert getattr(cfg.model, section)[key] == "weights.safetensors"
    # both spellings: the new key wins, and the warning says so
    with pytest.warns(FutureWarning, match=rf"model\.{section}\.{key} is also given and wins"):
        cfg = resolve(RunConfig, [], [f"model.{old}=old.pt", f"model.{section}.{key}=new.pt"])
    assert getattr(cfg.model, section)[key] == "new.pt"


def test_a_config_dump_of_the_earlier_release_reads_without_warnings(tmp_path):
    # run directories written before the rename hold every old key with its null default
    old = tmp_path / "config.yaml"
    old.write_text(
        "model:\n  preset: remixformer_tiny\n  clinical_weights: null\n  window_encoder_weights: null\n"
        "  region_encoder_weights: null\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = resolve(RunConfig, [old])
    assert cfg.model.clinical == {} and cfg.model.dermoscopy == {}


def test_pretraining_init_weights_is_now_backbone_pretrained():
    from remixformer.pretrain.config import PretrainConfig

    with pytest.warns(FutureWarning, match=r"backbone\.init_weights is deprecated.*use backbone\.pretrained"):
        cfg = resolve(PretrainConfig, [], ["backbone.preset=remixformer_tiny", "backbone.init_weights=w.pt"])
    assert cfg.backbone.pretrained == "w.pt"
    # null (from scratch) is not the default here: it moves to the new key like any value
    with pytest.warns(FutureWarning):
        cfg = resolve(PretrainConfig, [], ["backbone.preset=remixformer_tiny", "backbone.init_weights=null"])
    assert cfg.backbone.pretrained is None
    with pytest.raises(ConfigError, match=r"backbone\.dermoscopy\.embed_dimm"):
        resolve(PretrainConfig, [], ["backbone.dermoscopy.embed_dimm=8"])


def test_create_model_earlier_keywords_still_work_with_a_warning(tmp_path):
    from remixformer.models import create_model
    from remixformer.models.weights import WeightLoadError

    missing = str(tmp_path / "nope.safetensors")
    with pytest.warns(FutureWarning, match=r"clinical_weights=.*use the config key clinical\.pretrained"):
        with pytest.raises(WeightLoadError, match="nope.safetensors"):  # the file is used, so it is missing
            create_model("remixformer_tiny", "C", tasks=2, clinical_weights=missing)
    with pytest.warns(FutureWarning, match=r"name=.*use preset="):
        model = create_model(name="remixformer_tiny", modalities="C", tasks=2)
    assert model.config.preset == "remixformer_tiny"


def test_a_checkpoint_written_with_name_loads_silently(tmp_path):
    import json

    from remixformer.models import create_model, load_model, save_model
    from remixformer.serialization import read_safetensors, save_tensors

    path = save_model(create_model("remixformer_tiny", "C", tasks=2), tmp_path / "m.safetensors")
    tensors, meta = read_safetensors(path)
    config = json.loads(meta["config"])
    config["name"] = config.pop("preset")  # as the earlier release wrote it
    old = save_tensors(tmp_path / "old.safetensors", tensors, {**meta, "config": json.dumps(config)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_model(old)
    assert model.config.preset == "remixformer_tiny"


def test_cv_folds_come_from_the_config_and_an_override_is_echoed(monkeypatch, capsys):
    import remixformer.training.cv as cv

    seen = []
    monkeypatch.setattr(cv, "cross_validate", lambda cfg, **kw: seen.append(cfg) or {"table": ""})
    base = ["cv", "model.preset=remixformer_tiny", "data.n_folds=3"]
    assert main(base) == 0
    assert seen[-1].data.n_folds == 3
    assert "cross-validation: 3 folds (data.n_folds of the config)" in capsys.readouterr().out
    assert main([*base, "--folds", "4"]) == 0
    out = capsys.readouterr().out
    assert seen[-1].data.n_folds == 4
    assert "--folds 4 overrides data.n_folds=3 of the config" in out and "4 folds (--folds)" in out
    assert main([*base, "--folds", "3"]) == 0
    assert "overrides" not in capsys.readouterr().out and seen[-1].data.n_folds == 3
