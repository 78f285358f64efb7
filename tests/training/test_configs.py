"""Every experiment config under configs/ resolves: keys exist, types fit, model geometry holds."""

from pathlib import Path

import pytest

from remixformer.config import resolve
from remixformer.models.registry import resolve_config
from remixformer.training.config import RunConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUN_CONFIGS = sorted(
    p
    for p in CONFIGS.rglob("*.yaml")
    if p.parent.name not in ("pretrain", "base") and not p.name.startswith("_")
)


def test_the_paper_experiments_have_configs():
    names = {str(p.relative_to(CONFIGS)) for p in RUN_CONFIGS}
    expected = {
        "pad_ufes20/c.yaml",
        "pad_ufes20/cm.yaml",
        "isic2018/d.yaml",
        "isic2019/d.yaml",
        "isic2017/attributes_d.yaml",
        "isic2018/attributes_d.yaml",
        "xskintumor12/cdm.yaml",
        "ablations/lsm_k2.yaml",
        "ablations/lsm_k8.yaml",
        "ablations/dermoscopy_hrwe_in.yaml",
        "ablations/dermoscopy_hrwe_ssl.yaml",
        "ablations/clinical_swin_t_lsm.yaml",
        "synthetic/small_cdm.yaml",
    }
    expected |= {f"derm7pt/{m}.yaml" for m in ("c", "d", "cd", "cm", "dm", "cdm")}
    assert expected <= names


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_resolves_and_its_model_fits(path):
    cfg = resolve(RunConfig, [path])
    m = cfg.model
    model_cfg = resolve_config(
        m.preset,
        modalities=m.modalities,
        metadata_dim=10,
        clinical=m.clinical,
        dermoscopy=m.dermoscopy,
        metadata=m.metadata,
        fusion=m.fusion,
    )
    assert model_cfg.modalities == m.modalities.upper()
    assert cfg.name and cfg.name != "run"


def test_numbers_in_exponent_form_resolve_and_bad_numbers_name_the_field():
    from remixformer.config import ConfigError

    # YAML 1.1 reads 5e-4 (no dot) as a string; the config still takes it as a number
    assert resolve(RunConfig, [], ["train.lr=5e-4"]).train.lr == pytest.approx(5e-4)
    with pytest.raises(ConfigError, match=r"train\.lr: expected a number, got 'fast'"):
        resolve(RunConfig, [], ["train.lr=fast"])
    # an integer where a string is expected (Lightning's `precision=32`) is taken as its text; a bool is not
    assert resolve(RunConfig, [], ["train.precision=32"]).train.precision == "32"
    with pytest.raises(ConfigError, match=r"name: expected a string, got True"):
        resolve(RunConfig, [], ["name=true"])


def test_the_demo_trains_what_the_synthetic_configs_describe(tmp_path):
    from remixformer.demo import demo_config

    for mods in ("cdm", "c", "d", "m"):
        shipped = resolve(RunConfig, [CONFIGS / "synthetic" / f"small_{mods}.yaml"])
        demo = demo_config(tmp_path, mods.upper(), 600, 12, 0)
        assert demo.train.lr == shipped.train.lr
        assert demo.train.weight_decay == shipped.train.weight_decay
        assert demo.train.batch_size == shipped.train.batch_size
        assert demo.model.preset == shipped.model.preset
        assert demo.data.augment == shipped.data.augment
