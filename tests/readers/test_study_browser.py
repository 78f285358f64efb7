"""The reader study in a real headless Chromium (Debian's ``chromium`` driven by Playwright, as the serving
page's test): a reader goes through two cases in three stages, cannot go back, and resumes after a
server restart on another "device"; two readers read at once while the admin watches their progress."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from study_helpers import PASSWORD, make_study, running, simple_rows

from remixformer.study import Study, StudyDatabase
from remixformer.study.app import create_app

CHROMIUM = os.environ.get("REMIXFORMER_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM} (install Debian's chromium: apt-get install -y chromium)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _watch(page, problems: list[str]) -> None:
    """Collect console errors (a CSP violation is one) and uncaught page errors."""
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))


def _where(page) -> tuple[int, int]:
    """(case number, stage number) the page shows."""
    return int(page.inner_text("#case-number")), int(page.inner_text("#stage-number"))


def _check_shown(page, stage: int) -> None:
    """Stage 1: the photo; 2: the photo and metadata; 3: the photo, dermoscopy and metadata; every
    image shown has loaded."""
    assert page.locator("#images-clinical figure").count() == 1
    assert page.locator("#images-dermoscopy").count() == (1 if stage == 3 else 0)
    assert page.locator("#metadata").count() == (0 if stage == 1 else 1)
    widths = page.eval_on_selector_all("#case img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert widths and all(w == 24 for w in widths), widths


def _submit(page, diagnosis: str, confidence: str | None = None, wait: bool = True) -> None:
    page.check(f"#diagnoses input[value='{diagnosis}']")
    if confidence:
        page.check(f"#confidence input[value='{confidence}']")
    if wait:
        with page.expect_navigation():
            page.click("#submit")
    else:
        page.click("#submit", no_wait_after=True)


def test_a_reader_two_cases_three_stages_no_going_back_resume_after_restart(browser, tmp_path):
    study = make_study(tmp_path, simple_rows(2))
    _, token = study.add_reader("d001", "specialist")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    problems: list[str] = []
    with running(create_app(study)) as base:
        laptop = browser.new_context()
        page = laptop.new_page()
        _watch(page, problems)
        page.goto(f"{base}/join/{token}")
        assert "Welcome, d001" in page.inner_text("main")
        page.fill("#password", PASSWORD)
        page.fill("#password2", PASSWORD)
        with page.expect_navigation():
            page.click("#start")
        assert _where(page) == (1, 1) and page.inner_text("#whoami") == "Signed in as d001"
        assert "0 of 6 answers given" in page.inner_text(".progress-box")
        _check_shown(page, 1)
        _submit(page, "MEL", "2")
        assert _where(page) == (1, 2)
        _check_shown(page, 2)
        assert "new at this stage" in page.inner_text("#case")
        assert page.get_attribute("#progress", "value") == "1"

        # back: the browser only finds the current stage again, with nothing chosen
        page.go_back()
        page.wait_for_selector("#answer-form")
        assert _where(page) == (1, 2)
        assert page.eval_on_selector_all("#answer-form input:checked", "els => els.length") == 0
        page.go_forward()
        page.wait_for_selector("#answer-form")
        assert _where(page) == (1, 2)
        _submit(page, "NEV")
        assert _where(page) == (1, 3)
        _check_shown(page, 3)
        _submit(page, "BCC", "5")
        assert _where(page) == (2, 1)
        _check_shown(page, 1)
        _submit(page, "NEV")
        assert _where(page) == (2, 2)
        laptop_cookies = laptop.cookies()

    # the server stops; a new one starts on the same database (another port)
    restarted = Study(StudyDatabase(url))
    with running(create_app(restarted)) as base:
        tablet = browser.new_context()  # another device: signs in with name and password
        page2 = tablet.new_page()
        _watch(page2, problems)
        page2.goto(f"{base}/read")
        assert "Sign in" in page2.inner_text("main")
        page2.fill("#name", "d001")
        page2.fill("#password", PASSWORD)
        with page2.expect_navigation():
            page2.click("#sign-in")
        assert _where(page2) == (2, 2)
        assert "4 of 6 answers given" in page2.inner_text(".progress-box")
        _check_shown(page2, 2)
        # the laptop's session survived the restart too (the signing key is in the database)
        page.goto(f"{base}/read")
        assert _where(page) == (2, 2) and laptop.cookies() == laptop_cookies
        _submit(page2, "NEV")
        _check_shown(page2, 3)
        _submit(page2, "BCC")
        assert "All cases read" in page2.inner_text("main")
        assert "6 of 6 answers given" in page2.inner_text("main")
        # the laptop's page was for a step answered since: submitting it is refused, nothing changes
        _submit(page, "MEL")
        refusal = page.inner_text("main")
        assert "already answered" in refusal and "answers are final" in refusal
        laptop.close()
        tablet.close()
    rows = restarted.answer_rows()
    assert [(r["case_id"], r["stage"], r["answer"]) for r in rows] == [
        ("c0", "C", "MEL"),
        ("c0", "CM", "NEV"),
        ("c0", "CDM", "BCC"),
        ("c1", "C", "NEV"),
        ("c1", "CM", "NEV"),
        ("c1", "CDM", "BCC"),
    ]
    assert [r["confidence"] for r in rows] == [2, None, 5, None, None, None]
    expected = ("status of 401", "status of 409")  # the sign-in page before signing in; the refusal
    assert not [p for p in problems if not any(e in p for e in expected)], problems


def test_two_readers_at_once_and_the_admins_progress_page(browser, tmp_path):
    study = make_study(tmp_path, simple_rows(2), randomise=True, seed=3)
    token = study.set_admin_token()
    study.add_reader("a001", "specialist", password=PASSWORD)
    study.add_reader("b001", "resident", password=PASSWORD)
    problems: list[str] = []
    with running(create_app(study)) as base:
        pages = {}
        for name in ("a001", "b001"):
            page = browser.new_context().new_page()
            _watch(page, problems)
            page.goto(f"{base}/login")
            page.fill("#name", name)
            page.fill("#password", PASSWORD)
            with page.expect_navigation():
                page.click("#sign-in")
            pages[name] = page
        a, b = pages["a001"], pages["b001"]
        # both submit before either page has reloaded: two answers in flight at once, three times
        for k, (diagnosis_a, diagnosis_b) in enumerate((("MEL", "BCC"), ("NEV", "BCC"), ("MEL", "NEV")), 1):
            with a.expect_navigation(), b.expect_navigation():
                _submit(a, diagnosis_a, wait=False)
                _submit(b, diagnosis_b, wait=False)
            assert a.inner_text("#answered") == b.inner_text("#answered") == str(k)
        assert _where(a) == _where(b) == (2, 1)
        _submit(a, "NEV")
        assert _where(a) == (2, 2) and _where(b) == (2, 1)

        admin = browser.new_context().new_page()
        _watch(admin, problems)
        admin.goto(f"{base}/admin")
        admin.fill("#token", token)
        with admin.expect_navigation():
            admin.click("#admin-sign-in")
        progress = {
            row.get_attribute("data-reader"): row.query_selector(".answered").inner_text()
            for row in admin.query_selector_all("#progress-table tbody tr")
        }
        assert progress == {"a001": "4 / 6", "b001": "3 / 6"}
        assert admin.inner_text("#n-answers") == "7"
        export = admin.request.get(f"{base}/admin/export.csv")
        lines = export.text().splitlines()
        assert lines[0] == "reader_id,group,case_id,stage,answer" and len(lines) == 8
        assert [line.split(",")[4] for line in lines[1:5]] == ["MEL", "NEV", "MEL", "NEV"]  # a001's
        assert [line.split(",")[4] for line in lines[5:]] == ["BCC", "BCC", "NEV"]  # b001's
        # a reader's session cannot reach the admin's pages
        assert a.request.get(f"{base}/admin/export.csv").status == 403
        assert "Not allowed" in a.goto(f"{base}/admin").text()
    expected = ("status of 401", "status of 403")  # the admin's sign-in page; the reader at /admin
    assert not [p for p in problems if not any(e in p for e in expected)], problems
