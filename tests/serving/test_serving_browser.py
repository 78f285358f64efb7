"""The web page end to end in a real headless Chromium (Debian's ``chromium`` driven by Playwright):
load the page, upload images, choose metadata, submit, see the bars and overlays; a bad file gives an
error message on the page."""

import os
from pathlib import Path

import pytest
from serving_helpers import TASKS, png_bytes, running

from remixformer.serving.app import create_app

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


def test_page_upload_submit_result_and_error(predictor, browser, tmp_path):
    photo, derm, bad = tmp_path / "photo.png", tmp_path / "derm.jpg", tmp_path / "notes.png"
    photo.write_bytes(png_bytes(120, 90, seed=1))
    derm.write_bytes(png_bytes(80, 80, seed=2, fmt="JPEG"))
    bad.write_bytes(b"these are notes, not an image")
    console_errors = []
    with running(create_app(predictor)) as url:
        page = browser.new_page()
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='true']", timeout=20_000)
        assert "not a medical device" in page.inner_text("#disclaimer")
        assert "tiny_CDM.safetensors" in page.inner_text("#model-info")

        # the form follows the schema: a select per categorical field, a number input for age
        options = page.eval_on_selector_all("#meta-sex option", "els => els.map(e => e.value)")
        assert options == ["", "female", "male"]
        assert page.get_attribute("#meta-age", "type") == "number"

        page.set_input_files("#file-clinical", str(photo))
        page.set_input_files("#file-dermoscopy", str(derm))
        page.select_option("#meta-sex", "female")
        page.select_option("#meta-location", "trunk")
        page.fill("#meta-age", "52")
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=30_000)

        rows = page.query_selector_all("#bars li.bar-row")
        assert [r.get_attribute("data-class") for r in rows] != []
        assert sorted(r.get_attribute("data-class") for r in rows) == sorted(TASKS["diag"])
        assert len(page.query_selector_all("#bars li.bar-row.top")) == 3
        values = [float(r.query_selector(".bar-value").inner_text().split()[0]) for r in rows]
        assert values == sorted(values, reverse=True) and abs(sum(values) - 100) < 0.5
        width = page.eval_on_selector("#bars li.bar-row .bar-fill", "e => e.style.width")
        assert width.endswith("%") and float(width[:-1]) == pytest.approx(values[0], abs=0.1)
        assert "photo, dermoscopy, metadata" in page.inner_text("#result-meta")
        figures = page.query_selector_all("#overlays figure")
        assert [f.get_attribute("data-name") for f in figures] == ["lsm", "region", "window"]
        loaded = page.eval_on_selector_all(
            "#overlays img", "imgs => imgs.map(i => i.complete && i.naturalWidth)"
        )
        assert all(w == 64 for w in loaded)
        assert page.is_hidden("#error")

        # a file that is not an image: the service's message appears on the page
        page.set_input_files("#file-dermoscopy", str(bad))
        page.click("#submit")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        message = page.inner_text("#error")
        assert "415" in message and "dermoscopy" in message and "not a decodable image" in message
        assert page.is_hidden("#result")

        # nothing chosen: the page says so without calling the service
        page.click("#reset")
        page.click("#submit")
        page.wait_for_selector("#error:not([hidden])")
        assert "Nothing to classify" in page.inner_text("#error")
        page.close()
    assert not [e for e in console_errors if "415" not in e], console_errors
