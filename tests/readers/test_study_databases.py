"""The same rules on every database: SQLite always, PostgreSQL when ``REMIXFORMER_TEST_POSTGRES_URL``
names a server where the test may create (and drop) a database, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres`` (needs ``pip install "psycopg[binary]"``).
Concurrent answers to one step: exactly one is recorded."""

from __future__ import annotations

import os
import secrets
import threading

import pytest
from study_helpers import PASSWORD, make_study, simple_rows

from remixformer.study import Study, StudyDatabase, StudyDatabaseError
from remixformer.study.db import meta_table
from remixformer.study.export import reader_csv_text
from remixformer.study.study import Conflict

POSTGRES = os.environ.get("REMIXFORMER_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    if not POSTGRES:
        pytest.skip("REMIXFORMER_TEST_POSTGRES_URL is not set (a PostgreSQL server to test against)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"remixformer_study_test_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_rules_and_the_schema_version_on_each_database(tmp_path, db_url):
    study = make_study(tmp_path, simple_rows(2), url=db_url, randomise=True, seed=1)
    reader, _ = study.add_reader("d001", "specialist", password=PASSWORD)
    for i in range(6):
        view = study.case_view(reader.id)
        assert view.step.index == i and set(view.images) >= {"clinical"}
        assert study.answer(reader.id, i, "MEL", confidence=3)
        assert study.answer(reader.id, i, "MEL", confidence=3) is False
        with pytest.raises(Conflict):
            study.answer(reader.id, i, "NEV")
    assert study.current_step(reader.id) is None
    lines = reader_csv_text(study).splitlines()
    assert len(lines) == 7 and lines[1].startswith("d001,specialist,c") and lines[1].endswith(",C,MEL")
    rows = study.answer_rows()
    assert all(r["seconds"] is not None and r["times_shown"] == 1 for r in rows)
    study.db.close()

    with StudyDatabase(db_url).engine.begin() as conn:
        conn.execute(meta_table.update().where(meta_table.c.key == "schema_version").values(value="0"))
    with pytest.raises(
        StudyDatabaseError, match="schema version 0, this remixformer reads version 1; there is no migration"
    ):
        StudyDatabase(db_url)


def test_concurrent_answers_to_one_step_record_one(tmp_path, db_url):
    study = make_study(tmp_path, simple_rows(2), url=db_url)
    reader, _ = study.add_reader("d001", password=PASSWORD)
    outcomes: list[object] = []
    barrier = threading.Barrier(6)

    def submit(diagnosis: str) -> None:
        other = Study(study.db)
        barrier.wait()
        try:
            outcomes.append(other.answer(reader.id, 0, diagnosis))
        except Conflict as e:
            outcomes.append(e)

    threads = [threading.Thread(target=submit, args=(d,)) for d in ["MEL", "MEL", "MEL", "NEV", "NEV", "BCC"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes.count(True) == 1 and len(outcomes) == 6
    answers = study.answers_of(reader.id)
    assert len(answers) == 1
    winner = answers[0].diagnosis
    # the others: the same answer again is a repeat (False), another one a conflict
    assert outcomes.count(False) == ["MEL", "MEL", "MEL", "NEV", "NEV", "BCC"].count(winner) - 1
    assert sum(isinstance(o, Conflict) for o in outcomes) == 6 - [
        "MEL",
        "MEL",
        "MEL",
        "NEV",
        "NEV",
        "BCC",
    ].count(winner)
