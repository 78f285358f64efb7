"""The web application through FastAPI's test client: signing in, reading, the rules over HTTP,
401/403 for unauthenticated and cross-reader requests, CSRF, escaping, uploads, the admin pages."""

from __future__ import annotations

import base64
import json
import re

import pytest
from fastapi.testclient import TestClient
from study_helpers import (
    PASSWORD,
    admin_sign_in,
    answer,
    csrf_of,
    current_step,
    make_study,
    predictions_csv,
    sign_in,
    simple_rows,
    text,
)

from remixformer.study.app import create_app


def client_for(study, **kw) -> TestClient:
    return TestClient(create_app(study, **kw))


def test_health_pages_and_headers(study):
    with client_for(study) as client:
        r = client.get("/health")
        assert r.json() == {"status": "ok", "study": "Test study", "state": "open", "schema_version": 1}
        page = client.get("/")
        assert page.status_code == 200 and 'action="/login"' in page.text
        assert "script-src" not in page.headers["content-security-policy"]  # no scripts at all
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-content-type-options"] == "nosniff"
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
        css = client.get("/static/style.css")
        assert css.status_code == 200 and "--accent" in css.text  # the page style of `serve`
        assert client.get("/static/study.css").status_code == 200
        assert client.get("/static/../app.py").status_code == 404
    with client_for(study, secure_cookies=True) as client:
        assert "secure" in client.get("/").headers["set-cookie"].lower()


def test_unauthenticated_requests_get_401(study):
    reader, _ = study.add_reader("d001", password=PASSWORD)
    with client_for(study) as client:
        for path in ("/read", "/read/image/0/clinical/0"):
            r = client.get(path)
            assert r.status_code == 401 and 'action="/login"' in text(r), path
        for path in ("/admin", "/admin/export.csv", "/admin/answers.csv", "/admin/comparison"):
            r = client.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), path
            assert 'action="/admin/login"' in text(r)
        csrf = csrf_of(client.get("/login").text)
        r = client.post("/read/answer", data={"csrf": csrf, "step": "0", "diagnosis": "MEL"})
        assert r.status_code == 401
        for path in ("/admin/close", "/admin/readers", "/admin/link", "/admin/predictions"):
            assert client.post(path, data={"csrf": csrf}).status_code == 401, path
        assert client.get("/admin", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
        # a wrong password or admin token: 401 with the form again, the same message for any wrong name
        r = client.post("/login", data={"csrf": csrf, "name": "d001", "password": "wrong one"})
        assert r.status_code == 401 and "the reader name or the password is not right" in text(r)
        r = client.post("/login", data={"csrf": csrf, "name": "nobody", "password": "wrong one"})
        assert r.status_code == 401 and "the reader name or the password is not right" in text(r)
        r = client.post("/admin/login", data={"csrf": csrf, "token": "wrong"})
        assert r.status_code == 401 and "the admin token is not right" in text(r)
    assert study.answers_of(reader.id) == []


def test_a_reader_through_http_one_stage_at_a_time(study):
    _, token = study.add_reader("d001", "specialist")
    with client_for(study) as client:
        page = client.get(f"/join/{token}")
        assert page.status_code == 200 and "Welcome, d001" in page.text
        csrf = csrf_of(page.text)
        r = client.post(
            "/join", data={"csrf": csrf, "token": token, "password": PASSWORD, "password2": "other"}
        )
        assert r.status_code == 422 and "the two passwords differ" in text(r)
        r = client.post(
            "/join", data={"csrf": csrf, "token": token, "password": "short", "password2": "short"}
        )
        assert r.status_code == 422 and "too short" in text(r)
        r = client.post(
            "/join",
            data={"csrf": csrf, "token": token, "password": PASSWORD, "password2": PASSWORD},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/read"
        assert client.get(f"/join/{token}").status_code == 404  # one time only

        page = client.get("/read").text
        assert current_step(page) == 0 and 'Case <strong id="case-number">1</strong> of 3' in page
        assert (
            "/read/image/0/clinical/0" in page
            and "dermoscopy" not in page.split('id="case"')[1].split("</section>")[0]
        )
        assert 'id="metadata"' not in page
        img = client.get("/read/image/0/clinical/0")
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert img.headers["cache-control"] == "no-store"
        assert client.get("/read/image/0/dermoscopy/0").status_code == 403  # not at stage C
        assert client.get("/read/image/1/clinical/0").status_code == 403  # not the current step
        assert client.get("/read/image/0/clinical/5").status_code == 404
        assert client.get("/read/image/0/metadata/0").status_code == 404

        r = answer(client, "MEL", confidence=4)
        assert r.status_code == 303 and r.headers["location"] == "/read"
        page = client.get("/read").text
        assert current_step(page) == 1 and 'id="metadata"' in page and "new at this stage" in page
        assert "/read/image/1/dermoscopy/0" not in page
        # going back: the old form again is accepted only when it repeats the stored answer
        assert answer(client, "MEL", confidence=4, step=0).status_code == 303
        r = answer(client, "NEV", step=0)
        assert r.status_code == 409 and "step 1 was already answered (MEL); answers are final" in text(r)
        r = answer(client, "NEV", step=2)
        assert r.status_code == 409 and "step 3 is not your current step (2)" in text(r)
        assert answer(client, "SCC").status_code == 422
        assert answer(client, "").status_code == 422
        csrf = csrf_of(client.get("/read").text)
        r = client.post("/read/answer", data={"csrf": csrf, "step": "1", "diagnosis": "MEL", "label": "x"})
        assert r.status_code == 422 and "unexpected form field(s) ['label']" in text(r)
        r = client.post(
            "/read/answer", data={"csrf": csrf, "step": "1", "diagnosis": "MEL", "confidence": "x"}
        )
        assert r.status_code == 422
        assert answer(client, "NEV").status_code == 303
        page = client.get("/read").text
        assert current_step(page) == 2 and "/read/image/2/dermoscopy/0" in page
        for diagnosis in ["BCC"] + ["NEV"] * 6:
            assert answer(client, diagnosis).status_code == 303
        page = client.get("/read")
        assert page.status_code == 200 and "All cases read" in page.text and "9 of 9 answers" in page.text
        # sign out, then back in from "another device" (a new client), where it says finished
        r = client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
        assert r.status_code == 303 and client.get("/read").status_code == 401
    with client_for(study) as other:
        sign_in(other, "d001")
        assert "All cases read" in other.get("/read").text
    assert [a.diagnosis for a in study.answers_of(study.reader_by_name("d001").id)][:3] == [
        "MEL",
        "NEV",
        "BCC",
    ]


def test_cross_reader_and_cross_role_requests_get_403(study):
    a, _ = study.add_reader("a001", password=PASSWORD)
    b, _ = study.add_reader("b001", password=PASSWORD)
    with client_for(study) as ca, client_for(study) as cb:
        sign_in(ca, "a001")
        sign_in(cb, "b001")
        assert answer(ca, "MEL").status_code == 303
        # b's form token in a's session: refused; nothing recorded for either
        r = answer(ca, "NEV", csrf=csrf_of(cb.get("/read").text))
        assert r.status_code == 403 and "CSRF" in text(r)
        # a reader cannot open the admin pages, the export or the comparison
        for path in ("/admin", "/admin/export.csv", "/admin/answers.csv", "/admin/comparison"):
            assert ca.get(path).status_code == 403, path
        csrf = csrf_of(ca.get("/read").text)
        for path in ("/admin/close", "/admin/readers", "/admin/predictions"):
            assert ca.post(path, data={"csrf": csrf}).status_code == 403, path
        # b's step-0 images are b's: a (now at step 1) cannot see step 0 again
        assert cb.get("/read/image/0/clinical/0").status_code == 200
        assert ca.get("/read/image/0/clinical/0").status_code == 403
        # a cookie claiming to be b, signed with another key: not a session
        forged = base64.b64encode(json.dumps({"role": "reader", "rid": b.id, "v": 0, "csrf": "x"}).encode())
        with client_for(study) as cf:
            cf.cookies.set("remixformer_study", forged.decode() + ".AAAAAA.forgedsignature")
            assert cf.get("/read").status_code == 401
        # a form from another site: refused even with the right token
        r = ca.post(
            "/read/answer",
            data={"csrf": csrf, "step": "1", "diagnosis": "MEL"},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403 and "another site" in text(r)
    # behind a proxy that rewrites Host, the public address is the site's own
    with client_for(study, public_url="https://study.example.org") as proxied:
        sign_in(proxied, "b001")
        page = proxied.get("/read").text
        form = {"csrf": csrf_of(page), "step": "0", "diagnosis": "NEV"}
        bad = proxied.post("/read/answer", data=form, headers={"Origin": "https://evil.example.org"})
        assert bad.status_code == 403
        good = proxied.post(
            "/read/answer", data=form, headers={"Origin": "https://study.example.org"}, follow_redirects=False
        )
        assert good.status_code == 303
    # the admin's session is not a reader's
    with client_for(study) as admin:
        admin_sign_in(admin, study.admin_token)
        assert admin.get("/read").status_code == 403
        assert admin.get("/read/image/0/clinical/0").status_code == 403
    assert [x.diagnosis for x in study.answers_of(a.id)] == ["MEL"]
    assert [x.diagnosis for x in study.answers_of(b.id)] == ["NEV"]


def test_a_new_link_ends_the_readers_sessions(study):
    study.add_reader("d001", password=PASSWORD)
    with client_for(study) as client:
        sign_in(client, "d001")
        assert client.get("/read").status_code == 200
        study.new_link("d001")
        assert client.get("/read").status_code == 401


def test_html_in_case_ids_metadata_and_names_stays_text(tmp_path):
    rows = simple_rows(1)
    rows[0]["case_id"] = "<script>alert('id')</script>"
    rows[0]["sex"] = "<img src=x onerror=alert(1)>"
    study = make_study(tmp_path, rows, name="<i>Study</i> & co")
    token = study.set_admin_token()
    study.add_reader("d001", password=PASSWORD)
    with client_for(study) as client:
        sign_in(client, "d001")
        answer(client, "MEL")
        page = client.get("/read").text
        assert "&lt;img src=x onerror=alert(1)&gt;" in page and "<img src=x" not in page
        assert "&lt;i&gt;Study&lt;/i&gt; &amp; co" in page and "<i>Study" not in page
        assert "alert('id')" not in page  # readers never see case ids
    with client_for(study) as admin:
        admin_sign_in(admin, token)
        page = admin.get("/admin").text
        assert "&lt;script&gt;alert(&#39;id&#39;)&lt;/script&gt;" in page and "<script>" not in page
        csv_text = admin.get("/admin/export.csv").text
        assert (
            "\"<script>alert('id')</script>\"" not in csv_text
            and "<script>alert('id')</script>,C" in csv_text
        )


def test_admin_pages_accounts_upload_close_and_comparison(study):
    d1, _ = study.add_reader("d001", "specialist", password=PASSWORD)
    with client_for(study, max_upload_bytes=4096) as admin, client_for(study) as reader:
        admin_sign_in(admin, study.admin_token)
        page = admin.get("/admin")
        assert page.status_code == 200 and 'data-reader="d001"' in page.text
        csrf = csrf_of(page.text)
        assert "c0" in page.text and "BCC" in page.text  # the case list with labels, admin only

        r = admin.post("/admin/readers", data={"csrf": csrf, "name": "r001", "group": "resident"})
        assert r.status_code == 200
        link = re.search(r'id="new-link-url">([^<]+)<', r.text).group(1)
        assert link.startswith("http://testserver/join/")
        r = admin.post("/admin/readers", data={"csrf": csrf, "name": "r001", "group": "resident"})
        assert r.status_code == 422 and "already exists" in text(r)
        r = admin.post("/admin/link", data={"csrf": csrf, "name": "r001"})
        assert r.status_code == 200 and re.search(r'id="new-link-url">([^<]+)<', r.text).group(1) != link
        assert admin.post("/admin/close", data={}).status_code == 403  # no CSRF token

        sign_in(reader, "d001")
        for diagnosis in ["MEL", "NEV", "BCC"]:
            assert answer(reader, diagnosis).status_code == 303
        progress = admin.get("/admin").text
        assert re.search(r'data-reader="d001">.*?3 / 9', progress, re.S)

        # the model's predictions: a bounded upload, checked against the study
        labels = study.labels()
        good = predictions_csv(list(labels), list(labels.values()))
        big = good + "\n" * 5000
        r = admin.post(
            "/admin/predictions", data={"csrf": csrf}, files={"predictions": ("p.csv", big.encode())}
        )
        assert r.status_code == 413 and "larger than the upload limit of 4,096 bytes" in text(r)
        bad = predictions_csv(list(labels)[:2], list(labels.values())[:2])
        r = admin.post(
            "/admin/predictions", data={"csrf": csrf}, files={"predictions": ("p.csv", bad.encode())}
        )
        assert r.status_code == 422 and "have no prediction" in text(r)
        r = admin.post(
            "/admin/predictions",
            data={"csrf": csrf},
            files={"predictions": ("../../predictions.csv", good.encode())},
            follow_redirects=False,
        )
        assert r.status_code == 303 and study.predictions_csv()[0] == "predictions.csv"
        assert "Model predictions predictions.csv stored" in admin.get("/admin").text
        assert "predictions.csv" not in reader.get("/read").text  # readers never see it

        assert admin.get("/admin/comparison").status_code == 409  # not before the study is closed
        assert admin.post("/admin/close", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        closed = reader.get("/read")
        assert closed.status_code == 200 and "The study is closed" in closed.text
        r = reader.post("/read/answer", data={"csrf": csrf_of(closed.text), "step": "3", "diagnosis": "MEL"})
        assert r.status_code == 409 and "the study is closed" in text(r)

        page = admin.get("/admin/comparison")
        assert page.status_code == 200
        assert re.search(r'data-stage="CDM" data-group="specialist">.*?100.0 %', page.text, re.S)
        for name in ("stages", "roc_C", "accuracy_CDM"):
            png = admin.get(f"/admin/comparison/{name}.png")
            assert png.status_code == 200 and png.content[:4] == b"\x89PNG", name
        assert admin.get("/admin/comparison/nothing.png").status_code == 404

        export = admin.get("/admin/export.csv")
        assert export.headers["content-disposition"] == 'attachment; filename="readers.csv"'
        assert export.text.splitlines() == [
            "reader_id,group,case_id,stage,answer",
            "d001,specialist,c0,C,MEL",
            "d001,specialist,c0,CM,NEV",
            "d001,specialist,c0,CDM,BCC",
        ]
        assert admin.get("/admin/export.csv?stage=CM").text.splitlines()[1:] == ["d001,specialist,c0,CM,NEV"]
        assert "shown_at" in admin.get("/admin/answers.csv").text.splitlines()[0]
        # with the admin token as a bearer token (e.g. curl), no session needed
        with client_for(study) as curl:
            r = curl.get("/admin/export.csv", headers={"Authorization": f"Bearer {study.admin_token}"})
            assert r.status_code == 200 and r.text == export.text
        assert admin.post("/admin/reopen", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        assert study.settings().is_open
        # a new admin token ends the admin's session
        study.set_admin_token()
        assert admin.get("/admin").status_code == 401
    assert [a.diagnosis for a in study.answers_of(d1.id)] == ["MEL", "NEV", "BCC"]


def test_form_bodies_are_bounded(study):
    study.add_reader("d001", password=PASSWORD)
    with client_for(study) as client:
        csrf = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"csrf": csrf, "name": "d001", "password": "x" * (70 * 1024)})
        assert r.status_code == 401  # read (under the 4 MiB form limit), never hashed: over 1,024 characters
        r = client.post(
            "/login",
            content=b"a=" + b"x" * (5 * 2**20),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 413
        r = client.post("/login", content=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 415


@pytest.mark.parametrize("stages", [("C", "CD"), ("M", "CM", "CDM")])
def test_other_stage_lists(tmp_path, stages):
    study = make_study(tmp_path, stages=stages)
    study.add_reader("d001", password=PASSWORD)
    with client_for(study) as client:
        sign_in(client, "d001")
        first = client.get("/read").text
        assert ('id="metadata"' in first) == ("M" in stages[0])
        assert ("/read/image/0/clinical/0" in first) == ("C" in stages[0])
        answer(client, "MEL")
        second = client.get("/read").text
        assert ("/read/image/1/dermoscopy/0" in second) == ("D" in stages[1])
        assert f"of {len(stages)}:" in second
