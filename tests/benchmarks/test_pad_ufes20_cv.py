"""benchmarks/pad_ufes20_cv.py: the rows it runs, the mean ± std it reports, a second run that only reads
back what is done. On the tiny synthetic set with the tiny preset (the script takes any config)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

TINY = [
    "model.preset=remixformer_tiny",
    "model.fusion.branch_supervision=0",
    "data.protocol=kfold",
    "data.synthetic_test_cases=0",
    "train.max_epochs=1",
    "train.batch_size=8",
    "train.progress_bar=false",
]


@pytest.fixture(scope="module")
def cvs(load_script):
    return load_script("pad_ufes20_cv")


def test_rows_need_a_clinical_encoder_only_when_pretrained(cvs, tmp_path, capsys):
    args = cvs.parse_args(["--out-dir", str(tmp_path)])
    assert args.rows == ["M", "C", "CM"]
    enc = tmp_path / "g.safetensors"
    enc.write_bytes(b"x")
    args = cvs.parse_args(["--clinical-encoder", str(enc), "--out-dir", str(tmp_path), "data.augment=flips"])
    assert args.rows == ["M", "C", "CM", "C_pretrained", "CM_pretrained"]
    over = cvs.row_overrides(args, "CM_pretrained")
    assert over[0] == "data.augment=flips"
    assert "model.modalities=CM" in over and f"model.clinical.pretrained={enc}" in over
    assert "name=pad_CM_pretrained" in over and not any(
        "pretrained" in o for o in cvs.row_overrides(args, "CM")
    )
    with pytest.raises(SystemExit):
        cvs.parse_args(["--rows", "C_pretrained"])
    assert "need --clinical-encoder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cvs.parse_args(["--clinical-encoder", str(tmp_path / "absent.safetensors")])
    assert "no such file" in capsys.readouterr().err


def test_two_rows_two_folds_mean_std_and_a_rerun_that_reads_back(cvs, tiny_synth, tmp_path, capsys, caplog):
    config = Path(__file__).resolve().parents[2] / "configs" / "synthetic" / "small_cm.yaml"
    out, js = tmp_path / "cv", tmp_path / "cv.json"
    argv = [
        "--config",
        str(config),
        "--rows",
        "M",
        "CM",
        "--folds",
        "2",
        "--out-dir",
        str(out),
        "--json",
        str(js),
        f"data.root={tiny_synth}",
        *TINY,
    ]
    assert cvs.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| M |" in printed and "| CM |" in printed
    record = json.loads(js.read_text())
    assert list(record["rows"]) == ["M", "CM"]
    for row in ("M", "CM"):
        folds = json.loads((out / f"pad_{row}" / "cv_results.json").read_text())["folds"]
        assert (
            len(folds) == 2
            and json.loads((out / f"pad_{row}" / "cv_results.json").read_text())["config"]["model"][
                "modalities"
            ]
            == row
        )
        bacc = [f["metrics"]["balanced_accuracy"] for f in folds]
        got = record["rows"][row]["balanced_accuracy"]
        assert got["per_fold"] == bacc
        assert got["mean"] == pytest.approx(np.mean(bacc)) and got["std"] == pytest.approx(
            np.std(bacc, ddof=1)
        )
        assert record["rows"][row]["train_time_s"] > 0
    caplog.set_level("INFO")
    assert cvs.main(argv) == 0  # everything done: read back, nothing trained again
    assert caplog.text.count("already done") == 4
    assert json.loads(js.read_text())["rows"] == record["rows"]
