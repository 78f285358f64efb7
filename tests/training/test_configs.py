"""Every experiment config under configs/ resolves: keys exist, types fit, model geometry holds."""

from pathlib import Path

import pytest

from remixformer.config import ConfigError, resolve
from remixformer.models.registry import resolve_config
from remixformer.pretrain.config import PretrainConfig
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
    # YAML 1.1 reads 5e-4 (no dot) as a string; the config still takes it as a number
    assert resolve(RunConfig, [], ["train.lr=5e-4"]).train.lr == pytest.approx(5e-4)
    with pytest.raises(ConfigError, match=r"train\.lr: expected a number, got 'fast'"):
        resolve(RunConfig, [], ["train.lr=fast"])
    # an integer where a string is expected (Lightning's `precision=32`) is taken as its text; a bool is not
    assert resolve(RunConfig, [], ["train.precision=32"]).train.precision == "32"
    with pytest.raises(ConfigError, match=r"name: expected a string, got True"):
        resolve(RunConfig, [], ["name=true"])


def test_the_demo_trains_what_the_synthetic_configs_describe(tmp_path):
    from remixformer.cli.main import build_parser
    from remixformer.demo import DEMO_TEST_CASES, demo_config

    assert build_parser().parse_args(["demo"]).test_cases == DEMO_TEST_CASES

    for mods in ("cdm", "cd", "cm", "dm", "c", "d", "m"):
        shipped = resolve(RunConfig, [CONFIGS / "synthetic" / f"small_{mods}.yaml"])
        demo = demo_config(tmp_path, mods.upper(), 600, 12, 0)
        assert demo.data.synthetic_test_cases == shipped.data.synthetic_test_cases == DEMO_TEST_CASES
        fusion = demo.model.fusion.get("branch_supervision"), shipped.model.fusion.get("branch_supervision")
        assert fusion == ((1.0, 1.0) if len(mods) > 1 else (None, None))
        assert demo.train.lr == shipped.train.lr
        assert demo.train.weight_decay == shipped.train.weight_decay
        assert demo.train.batch_size == shipped.train.batch_size
        assert demo.model.preset == shipped.model.preset
        assert demo.data.augment == shipped.data.augment == "flips"
        assert demo.data.tasks == shipped.data.tasks == ["diag"]


def test_demo_overrides_change_the_recipe_last_and_are_checked(tmp_path):
    from remixformer.demo import demo_config

    default = demo_config(tmp_path, "C", 600, 12, 1)
    assert default.train.batch_size != 8 and "lsm_temperature" not in default.model.clinical
    cfg = demo_config(tmp_path, "C", 600, 12, 1, ["train.batch_size=8", "model.clinical.lsm_temperature=0.5"])
    assert cfg.train.batch_size == 8 and cfg.seed == 1
    assert cfg.model.clinical["lsm_temperature"] == 0.5
    assert cfg.train.lr == default.train.lr  # the rest of the recipe kept
    assert cfg.model.modalities == "C"
    with pytest.raises(ConfigError, match="batch_sise"):
        demo_config(tmp_path, "C", 600, 12, 1, ["train.batch_sise=16"])


def _pretrain_exports() -> dict[str, tuple[str, str]]:
    """Export path -> (backbone preset, encoder) for every pretraining config: where `remixformer pretrain`
    writes its teacher backbone (<output_dir>/<name>/teacher_backbone.safetensors)."""
    from remixformer.pretrain.config import PretrainConfig
    from remixformer.pretrain.export import CLINICAL_EXPORT_NAME, EXPORT_NAME

    out = {}
    for p in sorted((CONFIGS / "pretrain").glob("*.yaml")):
        cfg = resolve(PretrainConfig, [p])
        path = (Path(cfg.output_dir) / cfg.name / EXPORT_NAME).as_posix()
        out[path] = (cfg.backbone.preset, cfg.backbone.encoder)
    for p in RUN_CONFIGS:  # clinical branches trained on dermoscopy, their G exported beside the run
        run = resolve(RunConfig, [p])
        if run.data.dermoscopy_as_clinical:
            path = (Path(run.output_dir) / run.name / CLINICAL_EXPORT_NAME).as_posix()
            out[path] = (run.model.preset, "clinical_encoder")
    return out


def _check_weight_source(source, where, preset, encoder, exports):
    from timm.models import get_pretrained_cfg

    if source is None:
        return
    if source.startswith("timm:"):
        name = source.split(":", 1)[1]
        assert get_pretrained_cfg(name) is not None, f"{where}: {source!r} is no pretrained timm model"
        return
    assert source in exports, f"{where}: {source!r} is neither a timm name nor a path the project writes"
    assert exports[source] == (preset, encoder), (
        f"{where}: {source!r} is written by a pretraining of {exports[source]}, not of {(preset, encoder)}"
    )


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_weight_path_is_a_timm_name_or_a_path_the_project_writes(path):
    exports = _pretrain_exports()
    m = resolve(RunConfig, [path]).model
    for section, key, encoder in (
        (m.clinical, "pretrained", "clinical_encoder"),
        (m.dermoscopy, "pretrained", "window_encoder"),
        (m.dermoscopy, "region_pretrained", "window_encoder"),
    ):
        where = f"{path.name} {'clinical' if section is m.clinical else 'dermoscopy'}.{key}"
        _check_weight_source(section.get(key), where, m.preset, encoder, exports)


def test_pretraining_starts_from_a_timm_name_or_a_path_the_project_writes():
    from remixformer.pretrain.config import PretrainConfig

    exports = _pretrain_exports()
    for p in sorted((CONFIGS / "pretrain").glob("*.yaml")):
        b = resolve(PretrainConfig, [p]).backbone
        _check_weight_source(b.pretrained, f"{p.name} pretrained", b.preset, b.encoder, exports)


def test_ssl_rows_use_our_pretraining_and_imagenet_dino_rows_say_so():
    for path in RUN_CONFIGS:
        weights = resolve(RunConfig, [path]).model.dermoscopy.get("pretrained") or ""
        if path.stem.endswith("_ssl") or "_ssl_" in path.stem:
            # the teacher exported by one of configs/pretrain/, pretraining this row's preset
            run, file = Path(weights).parent, Path(weights).name
            assert (run.parent.as_posix(), file) == ("runs/pretrain", "teacher_backbone.safetensors"), (
                path.name
            )
            pretrain = resolve(PretrainConfig, [CONFIGS / "pretrain" / f"{run.name}.yaml"])
            assert pretrain.name == run.name, path.name
            assert pretrain.backbone.preset == resolve(RunConfig, [path]).model.preset, path.name
        if path.parent.name == "ablations" and weights.endswith(".dino"):
            assert "imagenet_dino" in path.stem or not path.stem.startswith("dermoscopy"), path.name


# Every row of the paper's ablation tables on X-SkinTumor-12 and the config that runs it (None would mark
# a row that cannot be built; there is none left).
TABLE_ROWS = {
    ("X", "ViT-S/16"): "ablations/clinical_vit_s.yaml",
    ("X", "ViT-S/16 + LSM"): "ablations/clinical_vit_s_lsm.yaml",
    ("X", "ViT-S/16 + LSM + CSF"): "ablations/clinical_vit_s_lsm_csf.yaml",
    ("X", "ViT-B/16"): "ablations/clinical_vit_b.yaml",
    ("X", "ViT-B/16 + LSM"): "ablations/clinical_vit_b_lsm.yaml",
    ("X", "ViT-B/16 + LSM + CSF"): "ablations/clinical_vit_b_lsm_csf.yaml",
    ("X", "Swin-T"): "ablations/clinical_swin_t.yaml",
    ("X", "Swin-T + LSM"): "ablations/clinical_swin_t_lsm.yaml",
    ("X", "Swin-T + LSM + CSF"): "ablations/clinical_swin_t_lsm_csf.yaml",
    ("XII", "Swin-T"): "ablations/dermoscopy_swin_t.yaml",
    ("XII", "Swin-B"): "ablations/dermoscopy_swin_b.yaml",
    ("XII", "Swin-T + HRWE"): "ablations/dermoscopy_swin_t_hrwe.yaml",
    ("XII", "ViT-S/16"): "ablations/dermoscopy_vit_s_384.yaml",
    ("XII", "ViT-B/16"): "ablations/dermoscopy_vit_b_384.yaml",
    ("XII", "ViT-S/16 + HRWE"): "ablations/dermoscopy_hrwe_ssl.yaml",
    ("XIII", "ViT-S/16 384^2 IN"): "ablations/dermoscopy_vit_s_384.yaml",
    ("XIII", "ViT-S/16 512^2 IN"): "ablations/dermoscopy_vit_s_512_in.yaml",
    ("XIII", "ViT-S/16 512^2 SSL"): "ablations/dermoscopy_vit_s_512_ssl.yaml",
    ("XIII", "ViT-S/16 2048^2 IN + HRWE"): "ablations/dermoscopy_hrwe_in.yaml",
    ("XIII", "ViT-S/16 2048^2 SSL + HRWE"): "ablations/dermoscopy_hrwe_ssl.yaml",
    ("XIII", "ViT-S/16 2048^2 SSL + HRWE + MSTA"): "ablations/dermoscopy_hrwe_ssl_msta.yaml",
    **{("XIV", f"Ours-{m}"): f"xskintumor12/{m.lower()}.yaml" for m in ("C", "D", "CM", "CD", "DM", "CDM")},
}


def test_every_row_of_tables_x_to_xiv_has_a_config_with_the_rows_model():
    from remixformer.models.paper_sizes import ROWS, row_overrides

    assert {(r.table, r.row) for r in ROWS} == set(TABLE_ROWS)
    for row in ROWS:
        config = TABLE_ROWS[(row.table, row.row)]
        assert (config is not None) == (row.overrides is not None), row.row
        if config is None:
            continue
        m = resolve(RunConfig, [CONFIGS / config]).model
        assert m.modalities == row.modalities, config
        # the config builds the model whose size `remixformer models --paper` reports for the row (the
        # encoders' weights, keys of the same sections, are not the row's architecture)
        weights = ("pretrained", "region_pretrained")
        clinical = {k: v for k, v in m.clinical.items() if k not in weights}
        dermoscopy = {k: v for k, v in m.dermoscopy.items() if k not in weights}
        ours = resolve_config(
            m.preset, modalities=m.modalities, metadata_dim=47, clinical=clinical, dermoscopy=dermoscopy
        )
        expected = resolve_config(
            "remixformer_paper", modalities=row.modalities, metadata_dim=47, **row_overrides(row)
        )
        for section in ("clinical", "dermoscopy"):
            if section[0].upper() in row.modalities:
                assert getattr(ours, section) == getattr(expected, section), (config, section)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_builds_on_the_meta_device(path):
    import torch

    from remixformer.models.registry import build_model

    m = resolve(RunConfig, [path]).model
    cfg = resolve_config(
        m.preset,
        modalities=m.modalities,
        metadata_dim=10,
        clinical=m.clinical,
        dermoscopy=m.dermoscopy,
        metadata=m.metadata,
        fusion=m.fusion,
    )
    with torch.device("meta"):
        model = build_model(cfg, load_pretrained=False)
    assert sorted(model.branches) == sorted(cfg.modalities)
