"""Builders shared by the reader-study tests: manifests, studies, signing in and answering over HTTP."""

from __future__ import annotations

import csv
import html
import json
import re
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["BCC", "NEV", "MEL"]
PASSWORD = "correct horse"


def png(path: Path, seed: int = 0, size: int = 24, fmt: str = "PNG") -> str:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, format=fmt)
    return path.name


def write_manifest(folder: Path, rows: list[dict], fields=("sex", "age"), classes=CLASSES) -> Path:
    """A manifest (with images written for every ``clinical`` / ``dermoscopy`` name) and its schema."""
    folder.mkdir(parents=True, exist_ok=True)
    schema = {
        "fields": [
            {"name": "sex", "kind": "categorical", "values": ["female", "male"]},
            {"name": "age", "kind": "numeric", "bins": [20, 40, 60], "description": "years"},
        ],
        "tasks": [{"name": "diag", "classes": list(classes)}],
    }
    schema["fields"] = [f for f in schema["fields"] if f["name"] in fields]
    (folder / "schema.json").write_text(json.dumps(schema))
    columns = ["case_id", "patient_id", "diagnosis", "clinical", "dermoscopy", *fields, "split"]
    with (folder / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        for i, row in enumerate(rows):
            for key in ("clinical", "dermoscopy"):
                for j, name in enumerate(p for p in row.get(key, "").split(";") if p):
                    png(folder / name, seed=100 * i + 10 * j + (key == "dermoscopy"))
            w.writerow({"split": "test", **row})
    return folder / "manifest.csv"


def simple_rows(n: int = 3) -> list[dict]:
    """``n`` complete cases c0.. with a photo, a dermoscopy image and metadata; labels cycle the classes."""
    return [
        {
            "case_id": f"c{i}",
            "patient_id": f"p{i}",
            "diagnosis": CLASSES[i % len(CLASSES)],
            "clinical": f"clin/c{i}.png",
            "dermoscopy": f"derm/c{i}.jpg",
            "sex": "female" if i % 2 else "male",
            "age": str(30 + 7 * i),
        }
        for i in range(n)
    ]


def make_study(tmp_path: Path, rows: list[dict] | None = None, *, db_name="study.db", url=None, **kw):
    """A study of ``rows`` (default: 3 complete cases) in ``url`` (default: a SQLite file in ``tmp_path``)."""
    from remixformer.study import Study, StudyDatabase, cases_from_manifest
    from remixformer.study.cases import DEFAULT_STAGES

    manifest = write_manifest(tmp_path / "data", rows if rows is not None else simple_rows())
    stages = kw.pop("stages", DEFAULT_STAGES)
    prepared = cases_from_manifest(manifest, stages=stages)
    db = StudyDatabase(url or f"sqlite:///{tmp_path / db_name}", create=True)
    study = Study.create(db, prepared, name=kw.pop("name", "Test study"), stages=stages, **kw)
    return study


def text(response) -> str:
    """A page's HTML with its entities decoded (messages quote names: 'x' is &#39;x&#39; in HTML)."""
    return html.unescape(response.text)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF token on the page"
    return html.unescape(m.group(1))


def sign_in(client, name: str, password: str = PASSWORD):
    page = client.get("/login").text
    r = client.post(
        "/login", data={"csrf": csrf_of(page), "name": name, "password": password}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    return r


def admin_sign_in(client, token: str):
    page = client.get("/admin").text  # 401 with the sign-in form
    r = client.post("/admin/login", data={"csrf": csrf_of(page), "token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r


def current_step(page: str) -> int:
    m = re.search(r'name="step" value="(\d+)"', page)
    assert m, "no answer form on the page"
    return int(m.group(1))


def answer(client, diagnosis: str, confidence: int | None = None, step: int | None = None, csrf=None):
    page = client.get("/read").text
    data = {
        "csrf": csrf if csrf is not None else csrf_of(page),
        "step": str(current_step(page) if step is None else step),
        "diagnosis": diagnosis,
    }
    if confidence is not None:
        data["confidence"] = str(confidence)
    return client.post("/read/answer", data=data, follow_redirects=False)


def predictions_csv(case_ids, labels, classes=CLASSES, right=True) -> str:
    """A predictions.csv of ``remixformer evaluate``: the model right on every case (or wrong)."""
    from remixformer.evaluation.predictions import Predictions
    from remixformer.tasks import TaskSpec

    n, k = len(case_ids), len(classes)
    y = np.asarray([classes.index(lab) for lab in labels])
    p = np.full((n, k), 0.1 / (k - 1))
    p[np.arange(n), y if right else (y + 1) % k] = 0.9
    preds = Predictions(list(case_ids), [TaskSpec("diag", tuple(classes))], {"diag": p}, {"diag": y})
    with tempfile.TemporaryDirectory() as d:
        return preds.to_csv(Path(d) / "predictions.csv").read_text()


@contextmanager
def running(app):
    """``app`` served by uvicorn in a thread on a free local port; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
