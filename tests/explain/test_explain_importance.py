"""Permutation importance of the metadata fields (Fig. 10)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from remixformer.cli.main import main
from remixformer.explain import importance_on_cases, permutation_importance
from remixformer.schema import MetadataSchema, categorical
from remixformer.tasks import TaskSpec

CLASSES = ("A", "B", "C", "D")


class OneFieldModel(nn.Module):
    """Answers from one metadata field only, by construction: value ``j`` of the field -> class ``j``
    (its unknown slot -> class 0); every other field has zero weight."""

    modalities = "M"

    def __init__(self, schema: MetadataSchema, field: str) -> None:
        super().__init__()
        self.tasks = (TaskSpec("diag", CLASSES),)
        self.linear = nn.Linear(schema.dim, len(CLASSES), bias=False)
        weight = torch.zeros(len(CLASSES), schema.dim)
        sl = schema.field_slices()[field]
        for j in range(sl.stop - sl.start):
            weight[j % len(CLASSES), sl.start + j] = 5.0
        self.linear.weight.data.copy_(weight)

    def forward(self, batch, explain=False):
        return {"logits": {"diag": self.linear(batch["metadata"])}}


def _schema():
    return MetadataSchema(
        [
            categorical("site", ["head", "trunk", "limb"]),
            categorical("sign", ["A", "B", "C", "D"]),  # the one the model reads
            categorical("sex", ["female", "male"]),
        ]
    )


def _batches(schema, n=80, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    records = [
        {
            "site": rng.choice(["head", "trunk", "limb", ""]),
            "sign": rng.choice(list(CLASSES)),
            "sex": rng.choice(["female", "male"]),
        }
        for _ in range(n)
    ]
    meta = torch.from_numpy(schema.encode_many(records))
    y = torch.tensor([CLASSES.index(r["sign"]) for r in records])
    return [
        {
            "metadata": meta[i : i + batch_size],
            "targets": {"diag": y[i : i + batch_size]},
            "case_id": [f"case{j}" for j in range(i, min(n, i + batch_size))],
        }
        for i in range(0, n, batch_size)
    ]


def test_the_only_field_the_model_reads_ranks_first_and_the_others_are_zero(tmp_path):
    schema = _schema()
    model = OneFieldModel(schema, "sign")
    result = permutation_importance(model, _batches(schema), schema, repeats=4, seed=1)
    assert result.baseline[0] == 1.0
    assert result.ranking()[0] == "sign"
    mean, std = result.mean(), result.std()
    sign, others = result.fields.index("sign"), [result.fields.index(f) for f in ("site", "sex")]
    assert mean[sign, 0] > 0.5  # shuffling the field leaves about a quarter right
    assert (mean[sign, 1:] > 0.3).all()  # every class's recall drops
    assert np.abs(mean[others]).max() < 1e-12 and np.abs(std[others]).max() < 1e-12
    assert result.drops.shape == (4, 3, 1 + len(CLASSES))
    # deterministic for a seed, and a field's result does not depend on the others analysed
    again = permutation_importance(model, _batches(schema), schema, repeats=4, seed=1, fields=["sign"])
    assert np.array_equal(again.drops[:, 0], result.drops[:, sign])

    result.write_csv(tmp_path / "importance.csv")
    result.write_json(tmp_path / "importance.json")
    rows = list(csv.DictReader((tmp_path / "importance.csv").open()))
    assert len(rows) == 3 * (1 + len(CLASSES))
    top = next(r for r in rows if r["field"] == "sign" and r["measure"] == "accuracy")
    assert float(top["mean_drop"]) == pytest.approx(mean[sign, 0])
    data = json.loads((tmp_path / "importance.json").read_text())
    assert data["ranking"][0] == "sign" and data["repeats"] == 4

    from remixformer.evaluation.plots import save_figure
    from remixformer.explain.figures import plot_importance

    fig = plot_importance(result)
    assert fig.axes[1].get_ylabel().startswith("drop")  # the colour bar
    save_figure(fig, tmp_path / "importance.png", dpi=50)


def test_bad_requests_are_rejected():
    schema = _schema()
    model = OneFieldModel(schema, "sign")
    with pytest.raises(ValueError, match="unknown metadata field"):
        permutation_importance(model, _batches(schema), schema, fields=["colour"])
    with pytest.raises(ValueError, match="repeats"):
        permutation_importance(model, _batches(schema), schema, repeats=0)
    model.modalities = "C"
    with pytest.raises(ValueError, match="does not use metadata"):
        permutation_importance(model, _batches(schema), schema)


def test_replaying_the_image_branches_gives_the_same_result_as_running_them(tiny_synth, tiny_checkpoint):
    from remixformer.data.config import DataConfig
    from remixformer.data.registry import load_dataset
    from remixformer.models.checkpoint import load_model

    model = load_model(tiny_checkpoint)
    with torch.no_grad():  # make the metadata matter: a random tiny model barely reads it otherwise
        model.branches["M"].linear.weight.mul_(50.0)
    table = load_dataset(DataConfig(dataset="synthetic", root=str(tiny_synth)))
    kwargs = dict(repeats=1, seed=0, fields=["sex", "location"], batch_size=8)
    cached = importance_on_cases(model, table, range(len(table)), cache_branches=True, **kwargs)
    full = importance_on_cases(model, table, range(len(table)), cache_branches=False, **kwargs)
    assert np.allclose(cached.drops, full.drops, equal_nan=True)
    assert np.allclose(cached.baseline, full.baseline, equal_nan=True)
    assert type(model.branches["C"]).__name__ == "ClinicalBranch"  # the branches are put back


def test_analyze_importance_command(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "imp"
    args = ["analyze", "importance", "--checkpoint", str(tiny_checkpoint), "--split", "all"]
    rc = main([*args, "--repeats", "2", "--fields", "sex", "changed", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "baseline accuracy" in text and "sex" in text
    for name in ("importance.png", "importance.csv", "importance.json"):
        assert (out / name).is_file()
    assert json.loads((out / "importance.json").read_text())["repeats"] == 2
