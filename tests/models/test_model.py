"""The composed model: shapes, gradients, modality subsets, presence masks, input errors."""

import pytest
import torch
from model_helpers import META_DIM, TASKS, make_batch

from remixformer import create_model, list_models
from remixformer.models.registry import PRESETS

SUBSETS = ["C", "D", "M", "CD", "CM", "DM", "CDM"]


def test_list_models_names_the_three_presets():
    assert list_models() == ["remixformer_paper", "remixformer_small", "remixformer_tiny"]


@pytest.mark.parametrize("name", ["remixformer_tiny", "remixformer_small"])
def test_presets_forward_shapes(name):
    model = create_model(name, "CDM", tasks=TASKS, metadata_dim=META_DIM).eval()
    with torch.no_grad():
        out = model(make_batch(model, B=2))
    assert {k: tuple(v.shape) for k, v in out["logits"].items()} == {"diag": (2, 5), "pn": (2, 3)}
    assert all(torch.isfinite(v).all() for v in out["logits"].values())


@pytest.mark.parametrize("modalities", SUBSETS)
def test_every_parameter_gets_a_gradient(tiny, modalities):
    model = tiny(modalities).train()
    out = model(make_batch(model))
    loss = sum(v.square().sum() for v in out["logits"].values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    # only the built branches exist
    assert sorted(model.branches) == sorted(modalities)


def test_multilabel_head_and_task_order():
    model = create_model(
        "remixformer_tiny",
        "D",
        tasks=[
            {"name": "diag", "classes": ["MEL", "NV", "SK"]},
            {"name": "attributes", "classes": ["PN", "NPN", "STR", "MLC"], "kind": "multi"},
        ],
    )
    with torch.no_grad():
        out = model.eval()(make_batch(model, B=2))
    assert list(out["logits"]) == ["diag", "attributes"]
    assert out["logits"]["attributes"].shape == (2, 4)


def test_absent_modality_rows_do_not_influence_a_case(tiny):
    model = tiny("CDM").eval()
    batch = make_batch(model, B=3)
    batch["clinical_present"] = torch.tensor([False, True, True])
    with torch.no_grad():
        a = model(batch)["logits"]["diag"]
        batch2 = dict(batch, clinical=batch["clinical"].clone())
        batch2["clinical"][0] = 100.0  # garbage in an absent slot
        b = model(batch2)["logits"]["diag"]
        alone = model({"dermoscopy": batch["dermoscopy"][:1], "metadata": batch["metadata"][:1]})["logits"][
            "diag"
        ]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[:1], alone, rtol=1e-5, atol=1e-5)


def test_any_presence_pattern_answers_and_trains(tiny):
    model = tiny("CDM").train()
    batch = make_batch(model, B=4)
    batch["clinical_present"] = torch.tensor([True, False, False, True])
    batch["dermoscopy_present"] = torch.tensor([False, True, False, True])
    batch["metadata_present"] = torch.tensor([False, False, True, True])
    out = model(batch)
    assert torch.isfinite(out["logits"]["diag"]).all()
    out["logits"]["diag"].sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)


def test_case_without_any_modality_is_an_error(tiny):
    model = tiny("CD").eval()
    batch = make_batch(model, B=2)
    batch["clinical_present"] = torch.tensor([False, True])
    batch["dermoscopy_present"] = torch.tensor([False, True])
    with pytest.raises(ValueError, match=r"rows \[0\]"):
        model(batch)


def test_explain_maps_have_the_geometry_of_the_inputs(tiny):
    model = tiny("CDM").eval()
    with torch.no_grad():
        out = model(make_batch(model, B=2), explain=True)
    maps = out["explain"]
    c, d = model.config.clinical, model.config.dermoscopy
    grid = c.global_size // (c.patch_size * 8)
    assert maps["lsm_scores"].shape == (2, grid, grid)
    torch.testing.assert_close(maps["lsm_scores"].sum((1, 2)), torch.ones(2))
    assert maps["lsm_cells"].shape == (2, c.num_crops)
    assert maps["lsm_boxes"].shape == (2, c.num_crops, 4)
    nw = d.image_size // d.window_size
    assert maps["region_attention"].shape == (2, nw, nw)
    torch.testing.assert_close(maps["region_attention"].sum((1, 2)), torch.ones(2))
    p = d.image_size // d.patch_size
    assert maps["window_attention"].shape == (2, p, p)
    # each window's class-token attention sums to one over its patches
    per_window = maps["window_attention"].view(2, nw, p // nw, nw, p // nw).sum((2, 4))
    torch.testing.assert_close(per_window, torch.ones(2, nw, nw))
    assert maps["template_assignment"].shape == (2, p, p)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(modalities=""), "modalities is empty"),
        (dict(modalities="X"), "unknown letter"),
        (dict(modalities="M"), "metadata_dim"),
        (dict(modalities="D", dermoscopy={"window_size": 24}), "does not divide"),
        (dict(modalities="C", crop_size=128), "larger than clinical.image_size"),
        (dict(modalities="C", clinical={"no_such_switch": 1}), "unknown config key"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("remixformer_tiny", tasks=TASKS, **kwargs)


def test_unknown_preset_is_a_value_error():
    with pytest.raises(ValueError, match="available"):
        create_model("remixformer_huge")


def test_wrong_input_shapes_raise_value_error(tiny):
    model = tiny("CDM").eval()
    batch = make_batch(model, B=2)
    with pytest.raises(ValueError, match=r"expected \(B, 3, 64, 64\)"):
        model(dict(batch, clinical=torch.randn(2, 3, 32, 32)))
    with pytest.raises(ValueError, match="one-hot width"):
        model(dict(batch, metadata=torch.randn(2, META_DIM + 1)))
    with pytest.raises(ValueError, match="batch size"):
        model(dict(batch, dermoscopy=batch["dermoscopy"][:1]))
    with pytest.raises(ValueError, match="none of this model's inputs"):
        model({"something": 1})


def test_ablation_switches_change_the_built_modules(tiny):
    base = tiny("CD")
    assert base.branches["C"].csf is not None and base.branches["D"].hrwe.msta is not None
    no_lsm = tiny("C", lsm=False)
    assert no_lsm.branches["C"].local_stage is None
    no_csf = tiny("C", csf=False)
    assert no_csf.branches["C"].csf is None and no_csf.branches["C"].local_stage is not None
    single = tiny("D", hrwe=False)
    assert single.branches["D"].hrwe is None and single.branches["D"].single_level is not None
    assert tiny("D", msta=False).branches["D"].hrwe.msta is None
    k2 = tiny("C", num_crops=2, **{"clinical.num_samples": 3})
    assert k2.branches["C"].lesion_selection.num_crops == 2
    assert k2.branches["C"].lesion_selection.num_samples == 3
    assert tiny("D", num_templates=6).branches["D"].hrwe.msta.templates.shape[0] == 6
    assert tiny("D", dermoscopy_window_size=16).branches["D"].region_encoder.grid == 4
    assert tiny("D", dermoscopy_size=128).config.dermoscopy.image_size == 128


def test_paper_preset_sizes_match_the_paper():
    # Tables X and XII: clinical branch (Swin-T + LSM + CSF) 48.3M; dermoscopy ViT-S/16 + HRWE, no MSTA 43.0M
    c = create_model("remixformer_paper", "C", tasks=12)
    assert abs(c.num_parameters("branches.C") / 1e6 - 48.3) / 48.3 < 0.03
    assert (
        abs(
            create_model("remixformer_paper", "C", tasks=12, csf=False).num_parameters("branches.C") / 1e6
            - 43.6
        )
        / 43.6
        < 0.03
    )
    d = create_model("remixformer_paper", "D", tasks=12, msta=False)
    assert abs(d.num_parameters("branches.D") / 1e6 - 43.0) / 43.0 < 0.03
    cfg = c.config
    assert (cfg.clinical.image_size, cfg.clinical.global_size, cfg.clinical.crop_size) == (896, 384, 224)
    assert cfg.clinical.num_crops == 4 and d.config.dermoscopy.num_templates == 32
    assert d.config.dermoscopy.window_size == 256 and d.config.dermoscopy.image_size == 1024


def test_presets_are_only_data():
    # three presets, one code path: a preset is a dict of config values, nothing else
    assert all(isinstance(v, dict) for v in PRESETS.values())


def test_convolutional_stem_option_builds_trains_and_keeps_shapes(tiny):
    from remixformer.layers.stem import ConvStemPatchEmbed

    model = tiny("CD", clinical={"conv_stem": True}, dermoscopy={"conv_stem": True}).train()
    assert isinstance(model.branches["C"].global_encoder.patch_embed, ConvStemPatchEmbed)
    assert isinstance(model.branches["D"].window_encoder.vit.patch_embed, ConvStemPatchEmbed)
    out = model(make_batch(model))
    out["logits"]["diag"].sum().backward()
    assert all(p.grad is not None for p in model.branches["D"].window_encoder.vit.patch_embed.parameters())


def test_override_aliases_have_one_meaning(tiny):
    with pytest.raises(ValueError, match="ambiguous.*dermoscopy_window_size.*clinical_window_size"):
        tiny("CD", window_size=16)
    both = tiny("CD", dermoscopy_window_size=16, clinical_window_size=4)
    assert both.config.dermoscopy.window_size == 16 and both.config.clinical.window_size == 4
    from remixformer.models.registry import ALIASES

    targets = list(ALIASES.values())
    assert all("." in t for t in targets)  # every alias names one field of one section


def test_more_crops_than_cells_is_an_error_not_a_silent_clamp():
    # the tiny preset's global grid is 2x2 = 4 cells
    with pytest.raises(ValueError, match="num_crops 5 is more than the 4 cells of G"):
        create_model("remixformer_tiny", "C", tasks=TASKS, num_crops=5)
    from remixformer.models.lesion_selection import LesionSelection

    lsm = LesionSelection(num_crops=5, crop_size=8).eval()
    with pytest.raises(ValueError, match="only 4 cells"):
        lsm(torch.full((1, 4), 0.25), (2, 2), torch.randn(1, 3, 32, 32))


def test_local_stage_has_the_drop_path_of_the_global_last_stage():
    model = create_model("remixformer_paper", "C", tasks=2)
    branch = model.branches["C"]

    def rates(stage):
        return [getattr(b.drop_path1, "drop_prob", 0.0) for b in stage.blocks]

    assert rates(branch.local_stage) == rates(branch.global_encoder.layers[-1])
    assert all(r > 0 for r in rates(branch.local_stage))


def test_cross_attention_has_no_key_mask_and_cmf_rows_without_sources_stay_finite(tiny):
    import inspect

    from remixformer.layers.attention import CrossAttentionBlock

    assert "context_mask" not in inspect.signature(CrossAttentionBlock.forward).parameters
    model = tiny("CD").eval()
    batch = make_batch(model, B=2)
    batch["dermoscopy_present"] = torch.tensor([False, True])  # row 0: C reads no source
    with torch.no_grad():
        out = model(batch, explain=True)
    assert torch.isfinite(out["logits"]["diag"]).all()
    assert torch.isnan(out["explain"]["cmf_C_from_D"][0]).all()


def test_a_uint8_batch_gives_what_its_normalised_float_batch_gives(tiny):
    from remixformer.layers.imaging import normalize_images

    model = tiny("CD").eval()
    g = torch.Generator().manual_seed(0)
    raw = {
        "clinical": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=g),
        "dermoscopy": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=g),
    }
    floats = {k: normalize_images(v) for k, v in raw.items()}
    assert floats["clinical"].dtype == torch.float32 and floats["clinical"].abs().max() > 1.5
    with torch.no_grad():
        a, b = model(raw)["logits"]["diag"], model(floats)["logits"]["diag"]
    assert torch.equal(a, b)
