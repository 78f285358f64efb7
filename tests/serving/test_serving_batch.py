"""Batch scoring of a manifest (bad rows reported with their row numbers, the rest scored) and the
``predict`` / ``serve`` commands."""

import csv
import json

import numpy as np
import pytest

from remixformer.cli.main import main
from remixformer.data.datasets.synthetic import generate
from remixformer.serving.batch import read_rows, read_scores, score_manifest


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("serving_data") / "synthetic", n_cases=12, seed=2,
                    clinical_size=64, dermoscopy_size=64)  # fmt: skip


def rewrite(src, dst, edit):
    rows = list(csv.DictReader(open(src, newline="")))
    edit(rows)
    with open(dst, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def test_score_a_manifest(predictor, synth, tmp_path):
    out = tmp_path / "preds.csv"
    result = score_manifest(predictor, synth / "manifest.csv", out, batch_size=5, progress=False)
    assert (result.n_rows, result.n_scored, result.errors) == (12, 12, [])
    assert result.cases_per_second > 0
    rows = read_scores(out)
    truth = list(csv.DictReader(open(synth / "manifest.csv")))
    assert [r["case_id"] for r in rows] == [t["case_id"] for t in truth]
    assert [r["diagnosis"] for r in rows] == [t["diagnosis"] for t in truth]  # carried over
    for r in rows:
        probs = np.array([float(r[f"diag_prob_{c}"]) for c in predictor.tasks[0].classes])
        assert probs.sum() == pytest.approx(1.0, abs=1e-4)
        assert r["predicted"] == predictor.tasks[0].classes[int(probs.argmax())]
        assert r["modalities_used"] == "CDM" or set(r["modalities_used"]) < set("CDM")
        assert r["error"] == ""
    # same answer as the Python API case by case
    first = truth[0]
    one = predictor.predict(
        clinical=synth / first["clinical"],
        dermoscopy=synth / first["dermoscopy"],
        metadata={k: first[k] for k in ("age", "sex", "location", "changed")},
    )
    assert float(rows[0]["diag_prob_NEV"]) == pytest.approx(one.probabilities["diag"]["NEV"], abs=1e-5)


def test_bad_rows_are_reported_and_the_rest_scored(predictor, synth, tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")

    def edit(rows):
        rows[1]["clinical"] = "clinical/missing.png"  # row 2
        rows[3]["sex"] = "alien"  # row 4
        rows[4]["dermoscopy"] = str(tmp_path / "junk.png")  # row 5
        for k in ("clinical", "dermoscopy", "age", "sex", "location", "changed"):
            rows[6][k] = ""  # row 7: nothing left
        rows[8]["case_id"] = rows[7]["case_id"]  # row 9 repeats row 8

    manifest = rewrite(synth / "manifest.csv", synth / "with_bad_rows.csv", edit)
    result = score_manifest(predictor, manifest, tmp_path / "out.csv", batch_size=4, progress=False)
    assert [e.row for e in result.errors] == [2, 4, 5, 7, 9]
    assert result.n_scored == 7
    messages = {e.row: str(e) for e in result.errors}
    assert "row 2 (CSV line 3" in messages[2] and "file not found" in messages[2]
    assert "'sex'" in messages[4] and "alien" in messages[4]
    assert "not a readable image" in messages[5]
    assert "no input" in messages[7]
    assert "repeats row 8" in messages[9]
    rows = read_scores(tmp_path / "out.csv")
    assert len(rows) == 12
    assert [int(r["row"]) for r in rows if r["error"]] == [2, 4, 5, 7, 9]
    assert all(r["diag_prob_BCC"] == "" for r in rows if r["error"])
    assert all(r["predicted"] for r in rows if not r["error"])


def test_several_images_of_a_case_are_averaged(predictor, synth, tmp_path):
    truth = list(csv.DictReader(open(synth / "manifest.csv")))
    a, b = truth[0]["dermoscopy"], truth[1]["dermoscopy"]

    def edit(rows):
        del rows[1:]
        rows[0]["clinical"] = ""
        rows[0]["dermoscopy"] = f"{a};{b}"
        for k in ("age", "sex", "location", "changed"):
            rows[0][k] = ""

    manifest = rewrite(synth / "manifest.csv", synth / "two_images.csv", edit)
    score_manifest(predictor, manifest, tmp_path / "out.csv", progress=False)
    got = float(read_scores(tmp_path / "out.csv")[0]["diag_prob_MEL"])
    each = [predictor.predict(dermoscopy=synth / p).probabilities["diag"]["MEL"] for p in (a, b)]
    assert got == pytest.approx(np.mean(each), abs=1e-5)


def test_a_manifest_with_no_input_column(predictor, tmp_path):
    (tmp_path / "m.csv").write_text("case_id,diagnosis\nc1,NEV\n")
    with pytest.raises(ValueError, match="no column holds an input"):
        read_rows(tmp_path / "m.csv", predictor)
    with pytest.raises(ValueError, match="not found"):
        read_rows(tmp_path / "nothing.csv", predictor)


# --- the commands -------------------------------------------------------------------------------------
def test_predict_one_case_table_and_json(make_checkpoint, synth, capsys):
    ckpt = str(make_checkpoint("CDM"))
    truth = list(csv.DictReader(open(synth / "manifest.csv")))[0]
    derm = str(synth / truth["dermoscopy"])
    assert (
        main(["-q", "predict", "--checkpoint", ckpt, "--dermoscopy", derm, "--meta", "sex=female", "age=61"])
        == 0
    )
    out = capsys.readouterr().out
    assert "inputs used: dermoscopy, metadata" in out and "rank" in out and "not a medical device" in out
    assert "pn: ABS" in out
    code = main(["-q", "predict", "--checkpoint", ckpt, "--dermoscopy", derm, "--json", "--top-k", "5"])
    assert code == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["top_k"]) == 5 and body["modalities_used"] == "D"
    assert body["checkpoint"]["file"] == "tiny_CDM.safetensors"


def test_predict_writes_overlays(make_checkpoint, synth, tmp_path, capsys):
    truth = list(csv.DictReader(open(synth / "manifest.csv")))[0]
    args = ["-q", "predict", "--checkpoint", str(make_checkpoint("CDM"))]
    args += ["--clinical", str(synth / truth["clinical"]), "--overlays", str(tmp_path / "ov")]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "ov").iterdir()) == ["lsm.png"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--meta", "sex"], "expected FIELD=VALUE"),
        (["--meta", "sex=alien"], "'alien' is not allowed"),
        (["--clinical", "/no/such/photo.jpg"], "file not found"),
        ([], "nothing to predict"),
        (["--manifest", "m.csv"], "needs --out"),
        (["--manifest", "m.csv", "--out", "o.csv", "--clinical", "x.png"], "either --manifest"),
    ],
)
def test_predict_user_errors(make_checkpoint, capsys, extra, message):
    assert main(["-q", "predict", "--checkpoint", str(make_checkpoint("CDM")), *extra]) == 2
    assert message in capsys.readouterr().err


def test_predict_manifest_command(make_checkpoint, synth, tmp_path, capsys):
    def edit(rows):
        rows[2]["dermoscopy"] = "dermoscopy/gone.png"

    manifest = rewrite(synth / "manifest.csv", synth / "one_bad.csv", edit)
    out = tmp_path / "preds.csv"
    args = ["-q", "predict", "--checkpoint", str(make_checkpoint("CDM")), "--manifest", str(manifest)]
    code = main([*args, "--out", str(out), "--batch-size", "4"])
    captured = capsys.readouterr()
    assert code == 1
    assert "scored 11 of 12 case(s)" in captured.out
    assert "row 3 (CSV line 4" in captured.err and "gone.png" in captured.err
    assert "scoring" in captured.err  # the progress bar
    assert len(read_scores(out)) == 12


def test_predict_into_a_closed_pipe_ends_quietly(make_checkpoint, synth, tmp_path):
    """``remixformer predict ... | head`` where ``head`` has gone: no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import remixformer

    truth = list(csv.DictReader(open(synth / "manifest.csv")))[0]
    image = synth / truth["dermoscopy"]
    root = str(Path(remixformer.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    env["OMP_NUM_THREADS"] = "1"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes anything
    cmd = [sys.executable, "-m", "remixformer", "-q", "predict", "--checkpoint", str(make_checkpoint("CDM"))]
    proc = subprocess.Popen(
        [*cmd, "--dermoscopy", str(image), "--json"], stdout=write_end, stderr=subprocess.PIPE, env=env
    )
    os.close(write_end)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_serve_stops_on_a_checkpoint_that_does_not_load(tmp_path, capsys, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server must not start"))
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 40)
    assert main(["-q", "serve", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "broken.safetensors" in err
    assert main(["-q", "serve", "--checkpoint", str(tmp_path / "absent.safetensors")]) == 2
    assert "absent.safetensors" in capsys.readouterr().err


def _with_header(src, dst, **fields):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    save_file(load_file(str(src)), str(dst), metadata={**meta, **fields})
    return dst


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"extra": "[]"}, "header field 'extra' must be a JSON object"),
        ({"extra": "{oops"}, "header field 'extra' is not valid JSON"),
    ],
)
def test_predict_and_serve_refuse_a_bad_header_naming_the_file(
    make_checkpoint, synth, tmp_path, capsys, monkeypatch, fields, message
):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server must not start"))
    bad = _with_header(make_checkpoint("CDM"), tmp_path / "edited.safetensors", **fields)
    truth = list(csv.DictReader(open(synth / "manifest.csv")))[0]
    for cmd in (
        ["predict", "--checkpoint", str(bad), "--dermoscopy", str(synth / truth["dermoscopy"])],
        ["serve", "--checkpoint", str(bad)],
    ):
        assert main(["-q", *cmd]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "edited.safetensors" in err and message in err, err


def test_serve_refuses_a_model_that_cannot_predict(make_checkpoint, capsys, monkeypatch):
    import uvicorn

    from remixformer.serving.predictor import PredictionError, Predictor

    def cannot(self):
        raise PredictionError("the model's 'diag' outputs are not finite (NaN or infinite)")

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server must not start"))
    monkeypatch.setattr(Predictor, "self_check", cannot)
    assert main(["-q", "serve", "--checkpoint", str(make_checkpoint("D"))]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "tiny_D.safetensors" in last and "not finite" in last


def test_serve_builds_the_app_with_its_limits(make_checkpoint, monkeypatch, capsys):
    import torch
    import uvicorn
    from fastapi.testclient import TestClient

    seen = {}
    threads = torch.get_num_threads()
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    try:
        args = ["-q", "serve", "--checkpoint", str(make_checkpoint("D")), "--port", "8123"]
        limits = ["--workers", "2", "--queue-size", "3", "--max-upload-mb", "1", "--threads", "1"]
        limits += ["--max-uploads", "5", "--read-timeout", "2.5", "--body-timeout", "30"]
        assert main([*args, *limits]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert "page: http://127.0.0.1:8123/" in capsys.readouterr().out
    with TestClient(seen["app"]) as c:
        limits = c.get("/model").json()["limits"]
    assert limits == {
        "max_upload_bytes": 2**20,
        "max_image_pixels": 100_000_000,
        "workers": 2,
        "queue_size": 3,
        "max_uploads": 5,
        "read_timeout_s": 2.5,
        "body_timeout_s": 30.0,
    }
