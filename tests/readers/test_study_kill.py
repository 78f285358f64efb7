"""A real ``remixformer readers serve`` process killed with SIGKILL between and during answers, then
restarted on the same database: every answer the server had confirmed is there, the database is
intact, and the reader continues where they were with the session cookie they had."""

from __future__ import annotations

import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from study_helpers import PASSWORD, csrf_of, current_step, make_study, simple_rows

from remixformer.study import Study, StudyDatabase

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,  # two server processes start (each imports torch): 17-28 s on 2 shared cores
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"),
]


class Server:
    """``remixformer readers serve --port 0`` in a subprocess; ``url`` once it listens."""

    def __init__(self, db: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        env.pop("REMIXFORMER_ADMIN_TOKEN", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "remixformer", "readers", "serve", "--db", db, "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 120
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise RuntimeError("the server did not start:\n" + "".join(self.output)) from None
            m = re.search(r"readers: (http://127\.0\.0\.1:\d+)/", line)
            if m:
                self.url = m.group(1)
                break
        # it prints the address just before uvicorn starts: wait until it answers
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not answer:\n" + "".join(self.output))
            time.sleep(0.05)

    def _pump(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.output.append(line)
            self.lines.put(line)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL


def _answer(client: httpx.Client, diagnosis: str) -> int:
    page = client.get("/read").text
    r = client.post(
        "/read/answer",
        data={
            "csrf": csrf_of(page),
            "step": str(current_step(page)),
            "diagnosis": diagnosis,
            "confidence": "3",
        },
    )
    assert r.status_code == 303, r.text
    return current_step(page)


def _integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def test_kill_9_between_and_during_answers_loses_nothing(tmp_path):
    study = make_study(tmp_path, simple_rows(4))  # 4 cases x 3 stages = 12 steps
    reader, _ = study.add_reader("d001", password=PASSWORD)
    study.db.close()
    path = tmp_path / "study.db"
    db = f"sqlite:///{path}"
    answers = ["BCC", "NEV", "MEL"] * 4
    confirmed: list[int] = []

    # 1. four answers confirmed by the server, then SIGKILL between answers
    server = Server(db)
    client = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    page = client.get("/login").text
    r = client.post("/login", data={"csrf": csrf_of(page), "name": "d001", "password": PASSWORD})
    assert r.status_code == 303
    for i in range(4):
        confirmed.append(_answer(client, answers[i]))
    server.kill()
    assert _integrity(path) == "ok"

    # 2. restarted on the same database: the same cookie still signs the reader in, at step 5
    server = Server(db)
    client.base_url = httpx.URL(server.url)
    page = client.get("/read")
    assert page.status_code == 200 and current_step(page.text) == 4
    for i in range(4, 7):
        confirmed.append(_answer(client, answers[i]))

    # 3. SIGKILL while an answer is in flight: it is either committed whole or not at all
    page = client.get("/read").text
    data = {"csrf": csrf_of(page), "step": str(current_step(page)), "diagnosis": answers[7]}
    result: dict = {}

    def send() -> None:
        try:
            result["status"] = client.post("/read/answer", data=data).status_code
        except httpx.TransportError as e:
            result["error"] = e

    thread = threading.Thread(target=send)
    thread.start()
    time.sleep(0.01)
    server.kill()
    thread.join(timeout=30)
    assert _integrity(path) == "ok"

    stored = Study(StudyDatabase(db))
    rows = stored.answer_rows()
    if result.get("status") == 303:
        confirmed.append(7)
    assert [r["step"] - 1 for r in rows][: len(confirmed)] == confirmed == list(range(len(confirmed)))
    assert len(rows) in (7, 8) and [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["answer"] for r in rows] == answers[: len(rows)]
    assert all(r["answered_at"] and r["shown_at"] and r["seconds"] is not None for r in rows)
    assert all(r["confidence"] == 3 for r in rows[:7])
    assert stored.current_step(reader.id).index == len(rows)  # the reader continues right after
    stored.db.close()
