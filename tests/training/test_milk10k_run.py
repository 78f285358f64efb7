"""MILK10k end to end on a tiny official layout without images: a metadata-only run (weight average,
class-balanced loss) fits the decision rule on its validation split only, then writes a benchmark
submission that the check accepts."""

import csv
import json

import numpy as np
import pytest
import torch
from milk10k_layout import BENCHMARK_IDS, write_milk10k
from safetensors.torch import load_file

from remixformer.cli.main import main
from remixformer.config import resolve
from remixformer.evaluation.milk10k import CLASSES
from remixformer.training.config import RunConfig
from remixformer.training.module import WeightAverage
from remixformer.training.run import train

CONFIG = "configs/milk10k/m_small.yaml"


def _cfg(root, out, *extra):
    return resolve(
        RunConfig,
        [CONFIG],
        [
            f"data.root={root}",
            f"output_dir={out}",
            "data.n_folds=4",
            "data.val_fraction=0.34",
            "train.max_epochs=3",
            "train.batch_size=8",
            "train.ema_decay=0.9",
            "model.metadata.hidden_dim=16",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def milk_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("milk")
    root = write_milk10k(tmp / "milk10k")  # tables only: no image anywhere
    cfg = _cfg(root, tmp / "runs")
    summary = train(cfg)
    return root, tmp / "runs" / cfg.name, summary


def test_thresholds_are_fitted_on_the_validation_split_only(milk_run):
    _, run, summary = milk_run
    rule = json.loads((run / "thresholds.json").read_text())
    with (run / "splits.csv").open() as f:
        split_of = {r["case_id"]: r["split"] for r in csv.DictReader(f)}
    fitted_on = rule["fitted_on"]["case_ids"]
    assert fitted_on and {split_of[c] for c in fitted_on} == {"val"}
    assert sorted(fitted_on) == sorted(c for c, s in split_of.items() if s == "val")
    assert rule["classes"] == list(CLASSES) and len(rule["thresholds"]) == 11
    assert all(0 < t < 1 for t in rule["thresholds"])
    ev = summary["eval"]
    assert ev["threshold_f1_macro_fitted"] is not None and ev["threshold_f1_macro"] is not None
    assert ev["val.threshold_f1_macro_fitted"] == pytest.approx(
        rule["validation"]["threshold_f1_macro_after"]
    )
    report = (run / "eval" / "test" / "report.md").read_text()
    assert "## Decision rule" in report and "F1@0.5" in report
    assert (run / "eval" / "val" / "report.md").exists()
    data = json.loads((run / "data.json").read_text())
    assert any("not checked: the model (M) does not read them" in n for n in data["notes"])


def test_submit_writes_a_file_the_check_accepts(milk_run, tmp_path, capsys):
    root, run, _ = milk_run
    out = tmp_path / "submission.csv"
    ckpt = run / "checkpoints" / "best.safetensors"
    assert main(["milk10k", "submit", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 benchmark lesions, model M, decision rule" in printed and "thresholds.json" in printed
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["lesion_id", *CLASSES] and [r[0] for r in rows[1:]] == BENCHMARK_IDS
    values = np.array([r[1:] for r in rows[1:]], dtype=float)
    assert ((values >= 0) & (values <= 1)).all()
    assert main(["milk10k", "check", str(out), "--root", str(root)]) == 0
    # without the rule, the model's softmax as it is: rows sum to one
    raw = tmp_path / "raw.csv"
    assert main(["milk10k", "submit", "--checkpoint", str(ckpt), "--out", str(raw), "--no-rule"]) == 0
    p = np.array([r[1:] for r in list(csv.reader(raw.open()))[1:]], dtype=float)
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    # the rule is an increasing rescaling of each class: the order of the lesions within a class is kept
    for j in range(11):
        assert np.array_equal(np.argsort(p[:, j], kind="stable"), np.argsort(values[:, j], kind="stable"))


def test_the_model_files_hold_the_weight_average(milk_run):
    from remixformer.engine.checkpoint_io import SafetensorsCheckpointIO

    _, run, _ = milk_run
    state = SafetensorsCheckpointIO().load_checkpoint(run / "checkpoints" / "last.state.safetensors")
    weights = state["state_dict"]
    last = load_file(str(run / "checkpoints" / "last.safetensors"))
    ema = {k.removeprefix("ema.module."): v for k, v in weights.items() if k.startswith("ema.module.")}
    raw = {k.removeprefix("model."): v for k, v in weights.items() if k.startswith("model.")}
    assert set(ema) == set(raw) == set(last) and int(weights["ema.updates"]) > 0
    for k, v in last.items():
        torch.testing.assert_close(v, ema[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(ema["branches.M.linear.weight"], raw["branches.M.linear.weight"])


def test_weight_average_warms_up_and_follows_the_weights():
    model = torch.nn.Linear(2, 1)
    avg = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    w0 = avg.module.weight.clone()
    avg.update(model)  # first update: d = 1/10
    torch.testing.assert_close(avg.module.weight, 0.1 * w0 + 0.9 * torch.ones_like(w0))
    for _ in range(200):
        avg.update(model)
    torch.testing.assert_close(avg.module.weight, torch.ones_like(w0), atol=1e-6, rtol=0)
    assert int(avg.updates) == 201 and not avg.module.weight.requires_grad


def test_a_resumed_run_with_a_weight_average_ends_where_an_uninterrupted_one_does(tmp_path):
    # a constant learning rate, so that stopping after 2 of 3 epochs computes what the first 2 epochs of
    # the whole run compute (the cosine schedule depends on max_epochs); kills: test_training_kill.py
    root = write_milk10k(tmp_path / "milk10k")
    same = ("eval.thresholds=false", "train.scheduler=constant")
    whole = _cfg(root, tmp_path / "a", *same)
    train(whole)
    train(_cfg(root, tmp_path / "b", *same, "train.max_epochs=2"))
    train(_cfg(root, tmp_path / "b", *same), resume=True)
    a = load_file(str(tmp_path / "a" / whole.name / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "b" / whole.name / "checkpoints" / "last.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_the_predictor_serves_the_metadata_model_with_interpolated_scores(milk_run):
    from remixformer.serving import Predictor

    _, run, _ = milk_run
    predictor = Predictor.from_checkpoint(run / "checkpoints" / "best.safetensors")
    fields = {f["name"]: f for f in predictor.metadata_fields()}
    assert fields["clinical_MONET_hair"]["encoding"] == "linear" and "encoding" not in fields["age_approx"]
    meta = {"age_approx": 65, "sex": "male", "site": "trunk", "dermoscopic_MONET_pigmented": 0.42}
    out = predictor.predict(metadata=meta)
    assert out.top_k[0][0] in CLASSES
    with pytest.raises(ValueError, match="interpolated between"):
        predictor.predict(metadata={"clinical_MONET_hair": 1.5})
