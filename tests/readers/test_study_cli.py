"""The ``remixformer readers`` commands: init, add, link, admin-token, status, close/reopen, export, and
the set-up errors of serve (the server itself runs in test_study_kill.py and the browser tests)."""

from __future__ import annotations

import io
import re

import pytest
from study_helpers import PASSWORD, simple_rows, write_manifest

from remixformer.cli.main import main
from remixformer.study import Study, StudyDatabase


@pytest.fixture
def manifest(tmp_path):
    rows = simple_rows(4)
    rows[3]["clinical"] = ""  # left out of a study that shows the photo
    return write_manifest(tmp_path / "data", rows)


def test_set_up_accounts_status_and_export(tmp_path, manifest, capsys, monkeypatch):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.delenv("REMIXFORMER_ADMIN_TOKEN", raising=False)
    assert (
        main(["readers", "init", "--db", db, "--cases", str(manifest), "--name", "Pilot", "--randomise"]) == 0
    )
    out = capsys.readouterr().out
    assert "setting up the study: 3 cases, stages C, CM, CDM, classes BCC, NEV, MEL" in out
    assert "note: 1 case(s) left out for lacking a modality the stages show: c3 (no clinical photo)" in out
    token = re.search(r"admin token \(shown only now; keep it secret\): (\S+)", out).group(1)
    study = Study(StudyDatabase(db))
    assert study.check_admin_token(token) is not None and study.settings().randomise

    assert main(["readers", "init", "--db", db, "--cases", str(manifest)]) == 2
    assert "already holds a study" in capsys.readouterr().err

    assert (
        main(
            [
                "readers",
                "add",
                "--db",
                db,
                "d001",
                "d002",
                "--group",
                "specialist",
                "--base-url",
                "http://h:1/",
            ]
        )
        == 0
    )
    links = re.findall(r"^(d00\d) \(specialist\): http://h:1/join/(\S+)$", capsys.readouterr().out, re.M)
    assert [name for name, _ in links] == ["d001", "d002"]
    assert study.link_reader(links[0][1]).name == "d001"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["readers", "add", "--db", db, "r001", "--group", "resident", "--password"]) == 0
    assert study.login("r001", PASSWORD) is not None
    assert main(["readers", "add", "--db", db, "a", "b", "--password"]) == 2
    assert "one NAME" in capsys.readouterr().err
    assert main(["readers", "add", "--db", db, "bad name"]) == 2
    assert "reader name 'bad name' is not allowed" in capsys.readouterr().err

    assert main(["readers", "link", "--db", db, "r001"]) == 0
    assert re.search(r"^r001: http://127.0.0.1:8000/join/\S+$", capsys.readouterr().out, re.M)
    assert study.login("r001", PASSWORD) is None  # the new link replaced the password
    assert main(["readers", "admin-token", "--db", db]) == 0
    new_token = capsys.readouterr().out.split(": ")[-1].strip()
    assert study.check_admin_token(token) is None and study.check_admin_token(new_token) is not None

    d1 = study.redeem_link(links[0][1], PASSWORD)
    for i, diagnosis in enumerate(["MEL", "NEV", "BCC", "MEL"]):
        study.answer(d1.id, i, diagnosis)
    assert main(["readers", "status", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "Pilot: open; 3 cases; stages C, CM, CDM" in out and "3 reader(s), 4 answer(s)" in out
    assert re.search(r"d001\s+specialist\s+4/9\s+1/3", out)
    assert re.search(r"d002\s+specialist\s+0/9 .*\(link not used yet\)", out)

    out_csv, details = tmp_path / "readers.csv", tmp_path / "details.csv"
    assert main(["readers", "export", "--db", db, "--out", str(out_csv), "--details", str(details)]) == 0
    out = capsys.readouterr().out
    assert f"wrote 4 answer(s) to {out_csv}" in out and "the study is still open" in out
    assert out_csv.read_text().splitlines()[0] == "reader_id,group,case_id,stage,answer"
    assert len(details.read_text().splitlines()) == 5
    assert main(["readers", "close", "--db", db]) == 0 and not study.settings().is_open
    assert main(["readers", "export", "--db", db, "--out", str(out_csv), "--stage", "CM"]) == 0
    assert "still open" not in capsys.readouterr().out and len(out_csv.read_text().splitlines()) == 2
    assert main(["readers", "reopen", "--db", db]) == 0 and study.settings().is_open


def test_command_errors_name_what_was_wrong(tmp_path, manifest, capsys):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["readers", "status", "--db", db]) == 2
    assert (
        "no reader study in this database; set one up with `remixformer readers init"
        in capsys.readouterr().err
    )
    assert main(["readers", "serve", "--db", db]) == 2
    assert "give --cases MANIFEST to set one up" in capsys.readouterr().err
    assert main(["readers", "init", "--db", db, "--cases", str(manifest), "--stages", "CDM,C"]) == 2
    assert "each stage must show everything the previous one showed" in capsys.readouterr().err
    assert main(["readers", "init", "--db", db, "--cases", str(tmp_path / "nope.csv")]) == 2
    assert "manifest file not found" in capsys.readouterr().err
    assert main(["readers", "init", "--db", db, "--cases", str(manifest), "--classes", "NEV,MEL"]) == 2
    assert "diagnosis 'BCC' is not one of the study's classes ['NEV', 'MEL']" in capsys.readouterr().err

    assert main(["readers", "init", "--db", db, "--cases", str(manifest), "--max-cases", "2"]) == 0
    capsys.readouterr()
    # serve --cases on a database holding another set of cases: refused before listening
    assert main(["readers", "serve", "--db", db, "--cases", str(manifest), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "cases differ from the 3 that --cases gives (new: ['c2']" in err
    assert main(["readers", "serve", "--db", db, "--port", "70000"]) == 2
    assert "--port must be in 0..65535" in capsys.readouterr().err
    assert main(["readers", "export", "--db", db, "--out", str(tmp_path / "x.csv"), "--stage", "D"]) == 2
    assert "stage 'D' is not one of the study's stages" in capsys.readouterr().err
    assert main(["readers", "link", "--db", db, "nobody"]) == 2
    assert "no reader named 'nobody'" in capsys.readouterr().err
