"""The MILK10k submission file: what the writer produces, and the check on good and bad files."""

import csv
import re

import numpy as np
import pytest
from milk10k_layout import BENCHMARK_IDS, write_milk10k

from remixformer.cli.main import main
from remixformer.evaluation.milk10k import CLASSES, check_submission, submission_text, write_submission

HEADER = ["lesion_id", *CLASSES]


@pytest.fixture
def bench(tmp_path):
    root = write_milk10k(tmp_path / "milk10k")
    return root / "MILK10k_Test_Metadata.csv"


def _probs(n=4, seed=0):
    return np.random.default_rng(seed).random((n, len(CLASSES)))


def _write_rows(path, rows):
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def _good_rows():
    text = submission_text(BENCHMARK_IDS, _probs())
    return [line.split(",") for line in text.splitlines()]


def test_the_writer_writes_the_official_layout_and_the_check_accepts_it(tmp_path, bench):
    path = write_submission(tmp_path / "sub.csv", BENCHMARK_IDS, _probs())
    rows = list(csv.reader(path.open()))
    assert rows[0] == HEADER and [r[0] for r in rows[1:]] == BENCHMARK_IDS
    assert np.allclose(np.array([r[1:] for r in rows[1:]], dtype=float), _probs())
    report = check_submission(path, bench)
    assert report.ok and report.n_rows == 4 and sum(report.positives.values()) == int((_probs() >= 0.5).sum())
    other = write_submission(tmp_path / "lesion.csv", BENCHMARK_IDS, _probs(), id_column="lesion")
    assert other.read_text().startswith("lesion,AKIEC,BCC,")
    assert check_submission(other, bench, id_column="lesion").ok
    with pytest.raises(ValueError, match="shape"):
        submission_text(BENCHMARK_IDS, _probs(3))


def _edit(rows, line, col, value):
    rows[line - 1][col] = value
    return rows


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r: _edit(r, 1, 0, "lesion"),
            r"line 1: wrong header .* \(the id column is 'lesion'; check with",
        ),
        (
            lambda r: [[r[0][0], r[0][2], r[0][1], *r[0][3:]], *r[1:]],
            "the classes are all there but out of order",
        ),
        (lambda r: [r[0][:-1], *(x[:-1] for x in r[1:])], r"missing \['VASC'\]"),
        (lambda r: r[:-1], r"1 benchmark lesion\(s\) missing: IL_B3"),
        (
            lambda r: _edit(r, 3, 0, "IL_X9"),
            r"1 lesion\(s\) that are not in the benchmark .*IL_X9 \(line 3\)",
        ),
        (lambda r: [*r, r[2]], r"line 6, column 'lesion_id': lesion 'IL_B1' again \(first on line 3\)"),
        (lambda r: _edit(r, 2, 5, "nan"), r"line 2, column 'DF' \(lesion 'IL_B0'\): NaN"),
        (
            lambda r: _edit(r, 4, 1, "1.2"),
            r"line 4, column 'AKIEC' \(lesion 'IL_B2'\): 1.2 is outside \[0, 1\]",
        ),
        (lambda r: _edit(r, 4, 2, "-0.1"), r"column 'BCC' \(lesion 'IL_B2'\): -0.1 is outside"),
        (
            lambda r: _edit(r, 5, 11, ""),
            r"line 5, column 'VASC' \(lesion 'IL_B3'\): blank; expected a probability",
        ),
        (lambda r: _edit(r, 5, 3, "high"), r"column 'BEN_OTH' \(lesion 'IL_B3'\): 'high' is not a number"),
        (lambda r: _edit(r, 2, 0, ""), r"line 2, column 'lesion_id': blank lesion id"),
        (lambda r: [*r[:2], r[2][:5], *r[3:]], r"line 3: 5 fields; expected 12"),
        (lambda r: [], "the file is empty"),
    ],
)
def test_bad_files_are_refused_naming_the_file_line_and_column(tmp_path, bench, edit, message):
    path = _write_rows(tmp_path / "bad.csv", edit(_good_rows()))
    report = check_submission(path, bench)
    assert not report.ok
    assert any(str(path) in e for e in report.errors)
    assert any(re.search(message, e) for e in report.errors), report.errors


def test_check_command_exit_status_and_messages(tmp_path, bench, capsys):
    good = write_submission(tmp_path / "good.csv", BENCHMARK_IDS, _probs())
    assert main(["milk10k", "check", str(good), "--metadata", str(bench)]) == 0
    assert "OK, 4 lesions x 11 classes" in capsys.readouterr().out
    # the metadata file is also found under a folder (the MILK10k download)
    assert main(["milk10k", "check", str(good), "--root", str(bench.parent)]) == 0
    capsys.readouterr()
    bad = _write_rows(tmp_path / "bad.csv", _edit(_good_rows(), 2, 5, "nan"))
    assert (
        main(["milk10k", "check", str(bad), "--metadata", str(bench), "--json", str(tmp_path / "r.json")])
        == 1
    )
    out = capsys.readouterr().out
    assert "1 problem(s)" in out and "column 'DF' (lesion 'IL_B0'): NaN" in out
    assert '"ok": false' in (tmp_path / "r.json").read_text()
