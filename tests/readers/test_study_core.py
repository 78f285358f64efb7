"""The study's rules without HTTP: stages, cases from a manifest, the database and its schema version,
accounts, the reading order, answers, exports and the comparison with the model."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest
from study_helpers import CLASSES, PASSWORD, make_study, predictions_csv, simple_rows, write_manifest

from remixformer.study import Study, StudyDatabase, StudyDatabaseError, cases_from_manifest, parse_stages
from remixformer.study.study import Conflict, Forbidden, NotFound, StudyError


# --- stages and cases -----------------------------------------------------------------------------
def test_stages_are_parsed_and_checked():
    assert parse_stages("C,CM,CDM") == ("C", "CM", "CDM")
    assert parse_stages(["d", "md", "DMC"]) == ("D", "DM", "CDM")  # letters in C, D, M order
    with pytest.raises(ValueError, match="show everything the previous one showed and more"):
        parse_stages("CM,C")
    with pytest.raises(ValueError, match="show everything the previous one showed and more"):
        parse_stages("C,D")
    with pytest.raises(ValueError, match=r"stage 'CX': expected distinct letters from C"):
        parse_stages("C,CX")
    with pytest.raises(ValueError, match="comma-separated list"):
        parse_stages("C,,CM")


def test_cases_from_a_manifest_through_the_data_layer(tmp_path):
    rows = simple_rows(4)
    rows[1]["dermoscopy"] = ""  # no dermoscopy image: cannot be read at a CDM stage
    rows[2]["sex"] = rows[2]["age"] = ""  # no metadata: cannot be read at an M stage
    rows[3]["split"] = "train"
    manifest = write_manifest(tmp_path, rows)
    prepared = cases_from_manifest(manifest)
    assert [c.case_id for c in prepared.cases] == ["c0", "c3"]
    assert prepared.left_out == [("c1", "no dermoscopy"), ("c2", "no metadata")]
    assert any("2 case(s) left out" in n and "c1 (no dermoscopy)" in n for n in prepared.notes)
    assert prepared.classes == tuple(CLASSES) and [f["name"] for f in prepared.fields] == ["sex", "age"]
    c0 = prepared.cases[0]
    assert c0.label == "BCC" and c0.metadata == {"sex": "male", "age": "30"}
    assert c0.clinical[0].endswith("clin/c0.png")

    # a photo-only study keeps the cases without dermoscopy or metadata; split and max_cases select
    photo_only = cases_from_manifest(manifest, stages=("C",), split="test", max_cases=2)
    assert [c.case_id for c in photo_only.cases] == ["c0", "c1"]
    with pytest.raises(ValueError, match=r"no case has split 'val'"):
        cases_from_manifest(manifest, split="val")
    with pytest.raises(
        ValueError, match=r"diagnosis 'BCC' is not one of the study's classes \['NEV', 'MEL'\]"
    ):
        cases_from_manifest(manifest, classes=["NEV", "MEL"])


def test_a_missing_image_file_is_an_error_naming_it(tmp_path):
    manifest = write_manifest(tmp_path, simple_rows(2))
    (tmp_path / "derm" / "c1.jpg").unlink()
    with pytest.raises(ValueError, match=r"derm/c1.jpg: file not found"):
        cases_from_manifest(manifest)


# --- the database ---------------------------------------------------------------------------------
def test_database_schema_version_and_foreign_databases(tmp_path):
    with pytest.raises(StudyDatabaseError, match=r"no reader study in this database; set one up with"):
        StudyDatabase(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(StudyDatabaseError, match="does not exist"):
        StudyDatabase(f"sqlite:///{tmp_path / 'no' / 'such' / 'folder.db'}")
    with pytest.raises(StudyDatabaseError, match="not a database URL"):
        StudyDatabase("nota://url:with:colons")

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE study_cases (x INTEGER)")
    with pytest.raises(StudyDatabaseError, match=r"has tables \['study_cases'\] but no 'study_meta'"):
        StudyDatabase(str(other))  # a plain path is a SQLite file

    study = make_study(tmp_path)
    path = tmp_path / "study.db"
    study.db.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE study_meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(
        StudyDatabaseError, match=r"schema version 2, this remixformer reads version 1; .*newer"
    ):
        StudyDatabase(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE study_meta SET value = '1' WHERE key = 'schema_version'")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    reopened = Study(StudyDatabase(f"sqlite:///{path}"))
    assert reopened.case_ids() == ["c0", "c1", "c2"] and reopened.stages == ("C", "CM", "CDM")
    with pytest.raises(StudyError, match="already holds a study"):
        make_study(tmp_path, db_name="study.db")


def test_images_are_re_encoded_without_the_original_files_metadata(tmp_path):
    from PIL import Image

    rows = simple_rows(1)
    manifest = write_manifest(tmp_path / "data", rows)
    photo = tmp_path / "data" / "clin" / "c0.png"
    info = Image.open(photo)
    info.load()
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("Comment", "diagnosis: BCC")
    info.save(photo, pnginfo=meta)
    study = Study.create(
        StudyDatabase(f"sqlite:///{tmp_path / 's.db'}", create=True),
        cases_from_manifest(manifest),
        name="t",
        stages=("C", "CM", "CDM"),
    )
    reader, _ = study.add_reader("r1", password=PASSWORD)
    study.case_view(reader.id)
    media_type, data = study.image(reader.id, 0, "clinical", 0)
    assert media_type == "image/png" and b"diagnosis" not in data and b"BCC" not in data
    for _ in range(2):
        study.answer(reader.id, study.current_step(reader.id).index, "NEV")
    media_type, data = study.image(reader.id, 2, "dermoscopy", 0)
    assert media_type == "image/jpeg" and data[:2] == b"\xff\xd8"


# --- accounts -------------------------------------------------------------------------------------
def test_accounts_links_passwords_and_the_admin_token(study):
    reader, token = study.add_reader("d001", "specialist")
    assert reader.link_pending and not reader.has_password and len(token) >= 32
    with pytest.raises(StudyError, match="reader 'd001' already exists"):
        study.add_reader("d001")
    with pytest.raises(ValueError, match=r"reader name '<b>x</b>' is not allowed; expected 1-64 characters"):
        study.add_reader("<b>x</b>")
    with pytest.raises(ValueError, match="group '=cmd' is not allowed"):
        study.add_reader("d002", "=cmd")
    with pytest.raises(ValueError, match="too short: at least 8 characters"):
        study.add_reader("d003", password="short")

    assert study.link_reader(token).name == "d001" and study.link_reader("nope") is None
    with pytest.raises(ValueError, match="too short"):
        study.redeem_link(token, "short")
    used = study.redeem_link(token, PASSWORD)
    assert used.has_password and not used.link_pending and used.auth_version == reader.auth_version + 1
    with pytest.raises(NotFound, match="already used or replaced"):
        study.redeem_link(token, PASSWORD)
    assert study.login("d001", PASSWORD).id == reader.id
    assert study.login("d001", "wrong password") is None and study.login("nobody", PASSWORD) is None

    # a new link ends the password and every session (the version moves on); answers stay
    study.answer(reader.id, 0, "MEL")
    token2 = study.new_link("d001")
    assert study.login("d001", PASSWORD) is None
    assert study.reader(reader.id).auth_version == used.auth_version + 1
    assert study.redeem_link(token2, "another password").has_password
    assert len(study.answers_of(reader.id)) == 1
    with pytest.raises(NotFound, match="no reader named 'zz'"):
        study.new_link("zz")

    version = study.check_admin_token(study.admin_token)
    assert version is not None and study.check_admin_token("wrong" * 8) is None
    new = study.set_admin_token()
    assert study.check_admin_token(study.admin_token) is None and study.check_admin_token(new) == version + 1
    with pytest.raises(ValueError, match="at least 16 characters"):
        study.set_admin_token("short")


# --- reading --------------------------------------------------------------------------------------
def test_reading_order_one_stage_at_a_time_with_no_going_back(study):
    reader, _ = study.add_reader("d001", password=PASSWORD)
    seen = []
    for i in range(9):
        view = study.case_view(reader.id)
        step = view.step
        assert (step.index, step.total, step.n_cases, step.n_stages) == (i, 9, 3, 3)
        assert step.stage == ("C", "CM", "CDM")[i % 3] and step.case_number == i // 3 + 1
        # only what the stage shows
        assert set(view.images) == ({"clinical"} if "D" not in step.stage else {"clinical", "dermoscopy"})
        assert (view.metadata is not None) == ("M" in step.stage)
        if view.metadata is not None:
            assert [m["name"] for m in view.metadata] == ["sex", "age"]
        if "D" not in step.stage:
            with pytest.raises(Forbidden, match="does not show the dermoscopy image"):
                study.image(reader.id, i, "dermoscopy", 0)
        with pytest.raises(Forbidden, match="not your current one"):
            study.image(reader.id, i + 1, "clinical", 0)
        with pytest.raises(NotFound, match="no clinical image 3"):
            study.image(reader.id, i, "clinical", 3)
        assert study.answer(reader.id, i, CLASSES[i % 3], confidence=1 + i % 5) is True
        # the same answer again (a repeated submission) is accepted once, another one is refused
        assert study.answer(reader.id, i, CLASSES[i % 3], confidence=1 + i % 5) is False
        with pytest.raises(Conflict, match=f"step {i + 1} was already answered .*; answers are final"):
            study.answer(reader.id, i, CLASSES[(i + 1) % 3])
        with pytest.raises(Forbidden):
            study.image(reader.id, i, "clinical", 0)  # an answered step shows nothing any more
        seen.append(step.case_ref)
    assert seen == [s for s in seen[::3] for _ in range(3)] and len(set(seen)) == 3
    assert study.case_view(reader.id) is None and study.current_step(reader.id) is None
    with pytest.raises(Conflict, match="every step has been answered"):
        study.answer(reader.id, 9, "MEL")
    with pytest.raises(Conflict, match="step 9 was already answered"):
        study.answer(reader.id, 8, "NEV")


def test_answers_are_checked_and_refused_out_of_order_or_when_closed(study):
    reader, _ = study.add_reader("d001", password=PASSWORD)
    with pytest.raises(Conflict, match=r"step 3 is not your current step \(1\)"):
        study.answer(reader.id, 2, "MEL")
    with pytest.raises(StudyError, match=r"diagnosis 'SCC' is not one of the study's classes"):
        study.answer(reader.id, 0, "SCC")
    with pytest.raises(StudyError, match=r"confidence 9: expected one of \[1, 2, 3, 4, 5\] or none"):
        study.answer(reader.id, 0, "MEL", 9)
    with pytest.raises(Forbidden):
        study.answer(999, 0, "MEL")
    study.set_state("closed")
    with pytest.raises(Conflict, match="the study is closed"):
        study.answer(reader.id, 0, "MEL")
    study.set_state("open")
    assert study.answer(reader.id, 0, "MEL")


def test_time_spent_is_from_the_first_showing(study, monkeypatch):
    import remixformer.study.study as module

    times = iter(
        ["2025-01-01T10:00:00.000+00:00", "2025-01-01T10:00:30.000+00:00", "2025-01-01T10:01:05.500+00:00"]
    )
    reader, _ = study.add_reader("d001", password=PASSWORD)
    monkeypatch.setattr(module, "now", lambda: next(times))
    study.case_view(reader.id)  # shown at 10:00:00
    study.case_view(reader.id)  # shown again (a reload) at 10:00:30
    study.answer(reader.id, 0, "MEL")  # answered at 10:01:05.5
    row = study.answer_rows()[0]
    assert row["shown_at"] == "2025-01-01T10:00:00.000+00:00" and row["seconds"] == 65.5
    assert row["times_shown"] == 2 and row["answered_at"] == "2025-01-01T10:01:05.500+00:00"


def test_randomised_order_per_reader_is_fixed_and_reproducible(tmp_path):
    rows = simple_rows(8)
    study = make_study(tmp_path, rows, randomise=True, seed=7)
    again = make_study(tmp_path / "again", rows, randomise=True, seed=7)

    def order(s, name):
        reader, _ = s.add_reader(name, password=PASSWORD)
        refs = []
        for i in range(8):
            refs.append(s.current_step(reader.id).case_ref)
            for j in range(3):
                s.answer(reader.id, 3 * i + j, "MEL")
        return refs

    a, b = order(study, "d001"), order(study, "d002")
    assert sorted(a) == sorted(b) == list(range(1, 9)) and a != b
    assert order(again, "d001") == a


# --- exports and the comparison -------------------------------------------------------------------
def _answer_all(study, reader, answers):
    for i, diagnosis in enumerate(answers):
        study.answer(reader.id, i, diagnosis)


def test_export_is_the_reader_csv_of_analyze_readers(study, tmp_path, capsys):
    from remixformer.cli.main import main
    from remixformer.explain.readers import read_reader_csv
    from remixformer.study.export import write_details_csv, write_reader_csv

    d1, _ = study.add_reader("d001", "specialist", password=PASSWORD)
    r1, _ = study.add_reader("r001", "resident", password=PASSWORD)
    # labels of c0, c1, c2: BCC, NEV, MEL (manifest order; no randomisation)
    _answer_all(study, d1, ["MEL", "NEV", "BCC", "NEV", "NEV", "NEV", "BCC", "MEL", "MEL"])
    _answer_all(study, r1, ["NEV", "NEV", "NEV"])  # one case so far
    out = tmp_path / "readers.csv"
    assert write_reader_csv(study, out) == 12
    lines = out.read_text().splitlines()
    assert lines[0] == "reader_id,group,case_id,stage,answer"
    assert lines[1:4] == [
        "d001,specialist,c0,C,MEL",
        "d001,specialist,c0,CM,NEV",
        "d001,specialist,c0,CDM,BCC",
    ]
    assert lines[-1] == "r001,resident,c0,CDM,NEV"
    parsed = read_reader_csv(out, CLASSES, study.case_ids())
    assert parsed.stages == ["C", "CM", "CDM"] and parsed.readers == {
        "d001": "specialist",
        "r001": "resident",
    }

    assert write_reader_csv(study, tmp_path / "cdm.csv", stage="CDM") == 4
    with pytest.raises(StudyError, match=r"stage 'D' is not one of the study's stages"):
        write_reader_csv(study, tmp_path / "d.csv", stage="D")
    write_details_csv(study, tmp_path / "details.csv")
    details = list(csv.DictReader((tmp_path / "details.csv").open()))
    assert list(details[0]) == [
        "reader_id", "group", "case_id", "stage", "answer", "confidence", "case_number", "stage_number",
        "step", "shown_at", "answered_at", "seconds", "times_shown",
    ]  # fmt: skip
    assert (
        details[4]["case_number"] == "2" and details[4]["stage_number"] == "2" and details[4]["step"] == "5"
    )

    # the round trip: analyze readers on the export and the model's predictions
    labels = study.labels()
    pred = tmp_path / "predictions.csv"
    pred.write_text(predictions_csv(list(labels), list(labels.values())))
    assert (
        main(
            [
                "analyze",
                "readers",
                "--predictions",
                str(pred),
                "--readers",
                str(out),
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "2 readers in 2 group(s), 3 cases, 3 stages" in text
    summary = {
        (r["stage"], r["group"]): r for r in csv.DictReader((tmp_path / "a" / "reader_stages.csv").open())
    }
    # d001 at C: MEL, NEV, BCC against BCC, NEV, MEL -> 1/3; at CDM: BCC, NEV, MEL -> 3/3
    assert float(summary["C", "specialist"]["mean_accuracy"]) == pytest.approx(1 / 3)
    assert float(summary["CDM", "specialist"]["mean_accuracy"]) == 1.0
    assert float(summary["CDM", "resident"]["mean_accuracy"]) == 0.0  # NEV on a BCC case
    assert float(summary["CDM", "model"]["mean_accuracy"]) == 1.0


def test_comparison_with_the_model(study):
    from remixformer.study.compare import check_predictions, compare_study

    d1, _ = study.add_reader("d001", "specialist", password=PASSWORD)
    _answer_all(study, d1, ["MEL", "NEV", "BCC", "NEV", "NEV", "NEV", "BCC", "MEL", "MEL"])
    with pytest.raises(StudyError, match="no model predictions yet"):
        compare_study(study)
    labels = study.labels()
    ids, truth = list(labels), list(labels.values())
    with pytest.raises(StudyError, match=r"the model's diagnosis classes are \['BCC', 'MEL', 'NEV'\]"):
        check_predictions(study, predictions_csv(ids, truth, classes=["BCC", "MEL", "NEV"]), "p.csv")
    with pytest.raises(StudyError, match=r"1 of the study's 3 cases have no prediction \(first: c2\)"):
        check_predictions(study, predictions_csv(ids[:2], truth[:2]), "p.csv")
    with pytest.raises(StudyError, match="not a predictions CSV"):
        check_predictions(study, "case_id,x\nc0,1\n", "p.csv")
    _, notes = check_predictions(study, predictions_csv(ids, ["MEL", "NEV", "MEL"]), "p.csv")
    assert "1 case(s) have another true diagnosis" in notes[0] and "c0 (BCC in the study, MEL" in notes[0]

    study.set_predictions("p.csv", predictions_csv(ids, truth, right=False))
    result = compare_study(study)
    rows = {(r["stage"], r["group"]): r for r in result.rows()}
    assert rows["CDM", "specialist"]["mean_accuracy"] == 1.0 and rows["CDM", "model"]["mean_accuracy"] == 0.0
    assert set(result.figures) == {
        "stages",
        "roc_C",
        "roc_CM",
        "roc_CDM",
        "accuracy_C",
        "accuracy_CM",
        "accuracy_CDM",
    }
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in result.figures.values())
    assert json.dumps(result.comparison.to_dict())  # JSON-safe


def test_the_data_layer_and_the_models_stay_below_the_study():
    """No module of data/ or models/ (nor the analysis of explain/) imports the study application."""
    from pathlib import Path

    import remixformer

    root = Path(remixformer.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for folder in ("data", "models", "explain", "evaluation")
        for path in (root / folder).rglob("*.py")
        if "remixformer.study" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
