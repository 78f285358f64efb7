"""ONNX export of a tiny CDM checkpoint (once per module: ~1 min), the file in onnxruntime, and the
onnxruntime backend of the Predictor, the predict command and the service against eager PyTorch."""

from __future__ import annotations

import contextlib
import io
import json
import re

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from remixformer import keys
from remixformer.cli.main import main
from remixformer.models.checkpoint import load_model
from remixformer.serialization import CheckpointError
from remixformer.serving import Predictor, onnx_export
from remixformer.serving.app import create_app

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.slow  # the export traces the model (~1 min on 2 busy cores)

TOL = 1e-4


@pytest.fixture(scope="module")
def exported(make_checkpoint, tmp_path_factory):
    """(checkpoint, .onnx path, exit code, printed output) of `remixformer export --format onnx`."""
    ckpt = make_checkpoint("CDM")
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["-q", "export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out)])
    return ckpt, out, code, buf.getvalue()


def test_export_prints_a_passing_parity_check_for_each_case_kind(exported):
    _, out, code, printed = exported
    assert code == 0, printed
    assert out.is_file() and out.stat().st_size > 100_000
    diffs = dict(re.findall(r"^  (\w[\w ]*?)\s+(\d\.\d\de[-+]\d\d)$", printed, flags=re.M))
    assert set(diffs) == {
        "all present",
        "without clinical",
        "without dermoscopy",
        "without metadata",
        "mixed",
    }, printed
    assert all(float(v) <= TOL for v in diffs.values())
    assert "OK: max" in printed


def _eager_probs(model, batch):
    return onnx_export.eager_probabilities(model, batch)


def test_file_runs_in_onnxruntime_at_other_batch_sizes_with_absent_modalities(exported):
    ckpt, out, _, _ = exported
    model = load_model(ckpt)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["clinical", "clinical_present", "dermoscopy", "dermoscopy_present", "metadata",
                     "metadata_present"]  # fmt: skip
    assert session.get_inputs()[0].shape[0] not in (1, 2, 3, 4, 5)  # symbolic batch axis
    for B, seed in ((1, 1), (5, 2)):
        batch = onnx_export.random_inputs(model.config, B, seed=seed)
        if B > 1:  # a case without a photo, one without dermoscopy, one with metadata only
            batch[keys.CLINICAL_PRESENT][0] = False
            batch[keys.DERMOSCOPY_PRESENT][1] = False
            batch[keys.CLINICAL_PRESENT][2] = batch[keys.DERMOSCOPY_PRESENT][2] = False
            batch[keys.CLINICAL][0] = 0.0
        feed = {n: batch[n].numpy() for n in names}
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        for task, p in _eager_probs(model, batch).items():
            assert got[f"{task}_probabilities"].shape == p.shape == (B, p.shape[1])
            np.testing.assert_allclose(got[f"{task}_probabilities"], p, atol=TOL)


def test_the_onnxruntime_backend_takes_uint8_batches_as_the_eager_model_does(exported):
    from remixformer.layers.imaging import normalize_images

    ckpt, out, _, _ = exported
    model, session = load_model(ckpt).eval(), onnx_export.OnnxModel(out)
    g = torch.Generator().manual_seed(3)
    batch = onnx_export.random_inputs(model.config, 2, seed=3)
    for key in (keys.CLINICAL, keys.DERMOSCOPY):  # uint8, as the data sets yield them
        batch[key] = torch.randint(0, 256, batch[key].shape, dtype=torch.uint8, generator=g)
    normalised = {
        k: normalize_images(v) if k in (keys.CLINICAL, keys.DERMOSCOPY) else v for k, v in batch.items()
    }
    got = session(batch)[keys.LOGITS]["diag"]
    np.testing.assert_allclose(got.numpy(), session(normalised)[keys.LOGITS]["diag"].numpy(), atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(got.numpy(), model(batch)[keys.LOGITS]["diag"].numpy(), atol=TOL)


def test_metadata_holds_the_config_and_the_preprocessing_contract(exported):
    ckpt, out, _, _ = exported
    model = load_model(ckpt)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["config"])["modalities"] == "CDM"
    contract = json.loads(meta[onnx_export.CONTRACT_KEY])
    size = model.config.clinical.image_size
    assert contract["inputs"]["clinical"]["shape"] == ["batch", 3, size, size]
    assert contract["inputs"]["clinical"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert contract["inputs"]["metadata"]["shape"] == ["batch", model.config.metadata_dim]
    assert contract["outputs"]["diag_probabilities"]["classes"] == ["BCC", "NEV", "MEL", "MISC", "SK"]
    assert contract["input_order"][:2] == ["clinical", "clinical_present"]


def test_predictor_onnxruntime_matches_eager(exported, png):
    ckpt, out, _, _ = exported
    eager = Predictor.from_checkpoint(ckpt)
    fast = Predictor.from_onnx(out)
    assert fast.backend == "onnxruntime" and not fast.can_explain
    assert fast.describe()["backend"] == "onnxruntime"
    assert fast.input_sizes == eager.input_sizes and fast.metadata_fields() == eager.metadata_fields()
    cases = [
        {"clinical": png(seed=1), "dermoscopy": png(seed=2), "metadata": {"sex": "female", "age": "61"}},
        {"dermoscopy": png(seed=3)},  # no photo, no metadata
        {"clinical": png(seed=4), "metadata": {"location": "trunk"}},
    ]
    for case in cases:
        a, b = eager.predict(**case, top_k=5), fast.predict(**case, top_k=5)
        assert a.modalities_used == b.modalities_used
        for task in a.probabilities:
            np.testing.assert_allclose(
                list(b.probabilities[task].values()), list(a.probabilities[task].values()), atol=TOL
            )
        assert [c for c, _ in a.top_k] == [c for c, _ in b.top_k]
    with pytest.raises(ValueError, match="no attention maps"):
        fast.predict(dermoscopy=png(), explain=True)
    with pytest.raises(ValueError, match="the model was trained without|no input"):
        fast.predict()


def test_predict_command_with_the_onnxruntime_backend(exported, tmp_path, png, capsys):
    ckpt, out, _, _ = exported
    derm = tmp_path / "d.png"
    derm.write_bytes(png(seed=5))
    answers = []
    for argv in (["--checkpoint", str(ckpt)], ["--checkpoint", str(out), "--backend", "onnxruntime"]):
        assert main(["-q", "predict", *argv, "--dermoscopy", str(derm), "--json", "--top-k", "5"]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    eager, fast = answers
    assert fast["checkpoint"]["backend"] == "onnxruntime" and fast["checkpoint"]["file"] == "tiny.onnx"
    for c, p in eager["probabilities"]["diag"].items():
        assert fast["probabilities"]["diag"][c] == pytest.approx(p, abs=TOL)
    with pytest.raises(ValueError, match=r"\.onnx file"):
        Predictor.load(ckpt, "onnxruntime")


def test_service_with_the_onnxruntime_backend(exported, png):
    ckpt, out, _, _ = exported
    eager = Predictor.from_checkpoint(ckpt).predict(clinical=png(seed=6), metadata={"sex": "male"})
    with TestClient(create_app(Predictor.from_onnx(out))) as client:
        r = client.post(
            "/predict", files={"clinical": ("c.png", png(seed=6), "image/png")}, data={"sex": "male"}
        )
        assert r.status_code == 200, r.text
        for c, p in eager.probabilities["diag"].items():
            assert r.json()["probabilities"]["diag"][c] == pytest.approx(p, abs=TOL)
        r = client.post(
            "/predict", files={"clinical": ("c.png", png(), "image/png")}, data={"explain": "true"}
        )
        assert r.status_code == 422 and r.json()["field"] == "explain"
        assert client.get("/model").json()["backend"] == "onnxruntime"


def test_export_exits_non_zero_when_parity_fails(make_checkpoint, tmp_path, monkeypatch, capsys):
    def fake_export(model, path, **kwargs):
        path.write_bytes(b"not a graph")
        return path

    monkeypatch.setattr(
        onnx_export, "export_onnx", lambda model, path, **kw: fake_export(model, tmp_path / "x.onnx")
    )
    monkeypatch.setattr(onnx_export, "parity_check", lambda model, path: {"all present": 3e-3})
    code = main(["-q", "export", "--checkpoint", str(make_checkpoint("CDM")), "--format", "onnx",
                 "--out", str(tmp_path / "x.onnx")])  # fmt: skip
    assert code == 1
    assert "FAIL: 3.00e-03 > tolerance 1e-04" in capsys.readouterr().out


def test_a_foreign_onnx_file_is_refused_naming_it(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])  # fmt: skip
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(CheckpointError, match=r"other\.onnx: not a remixformer model checkpoint"):
        Predictor.from_onnx(path)


def test_int8_quantisation_keeps_the_header_and_stays_near_eager(exported, tmp_path):
    ckpt, out, _, _ = exported
    q = onnx_export.quantize_onnx(out, tmp_path / "tiny.int8.onnx")
    graph = onnx.load(str(q)).graph
    weights = {t.name for t in graph.initializer}
    ops = [n.op_type for n in graph.node]
    assert ops.count("MatMulInteger") > 0 and "DynamicQuantizeLinear" in ops
    float_products = [
        n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and weights & set(n.input)
    ]
    assert not float_products  # every product with a weight is int8; attention's stay float
    assert q.stat().st_size < out.stat().st_size
    model, int8 = onnx_export.OnnxModel(out), onnx_export.OnnxModel(q)
    assert (model.quantization, int8.quantization) == (None, "int8")
    assert Predictor.from_onnx(q).describe()["checkpoint"]["quantization"] == "int8"
    assert int8.config == model.config and int8.checkpoint_extra == model.checkpoint_extra
    diffs = onnx_export.parity_check(load_model(ckpt), int8)
    assert 0 < max(diffs.values()) < 0.05, diffs  # moved by the int8 weights, not garbled
    with pytest.raises(ValueError, match=r"quantization: expected one of \['int8'\], got 'int4'"):
        onnx_export.quantize_onnx(out, tmp_path / "x.onnx", "int4")


def test_export_quantize_int8_checks_the_float_graph_then_writes_the_int8_one(
    exported, tmp_path, monkeypatch, capsys
):
    ckpt, out, _, _ = exported

    def copy_of_the_export(model, path, **kwargs):  # the module's export, without tracing again
        path.write_bytes(out.read_bytes())
        return path

    monkeypatch.setattr(onnx_export, "export_onnx", copy_of_the_export)
    target = tmp_path / "q.onnx"
    argv = ["-q", "export", "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(target)]
    assert main([*argv, "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    assert "OK: max" in printed and "int8 graph against eager" in printed, printed
    assert onnx_export.OnnxModel(target).quantization == "int8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]  # the float graph is not left behind
    hf = ["-q", "export", "--checkpoint", str(ckpt), "--format", "hf", "--out", str(tmp_path / "hub")]
    assert main([*hf, "--quantize", "int8"]) == 2
    assert "--quantize applies to --format onnx, not hf" in capsys.readouterr().err


def test_evaluate_with_the_onnxruntime_backend_gives_eager_predictions(tiny_checkpoint, tmp_path, capsys):
    import pandas as pd

    model = load_model(tiny_checkpoint)  # exported with its extras (the data set), as `export` does
    path = onnx_export.export_onnx(model, tmp_path / "tiny.onnx", extra=dict(model.checkpoint_extra))
    eager, ort_dir = tmp_path / "eager", tmp_path / "ort"
    assert main(["-q", "evaluate", "--checkpoint", str(tiny_checkpoint), "--out", str(eager)]) == 0
    argv = ["-q", "evaluate", "--checkpoint", str(path), "--backend", "onnxruntime", "--out", str(ort_dir)]
    assert main(argv) == 0
    a, b = pd.read_csv(eager / "predictions.csv"), pd.read_csv(ort_dir / "predictions.csv")
    assert list(a.columns) == list(b.columns) and len(a) == len(b) > 0
    probs = [c for c in a.columns if a[c].dtype.kind == "f"]
    assert probs and np.abs(a[probs].to_numpy() - b[probs].to_numpy()).max() <= TOL
    argv = ["-q", "evaluate", "--checkpoint", str(tiny_checkpoint), "--backend", "onnxruntime"]
    assert main(argv) == 2
    assert "the onnxruntime backend takes an .onnx file; export it first" in capsys.readouterr().err
