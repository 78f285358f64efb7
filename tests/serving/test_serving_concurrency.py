"""The service under load against a real uvicorn server on a free port: simultaneous distinct requests
get exactly the answers they get one at a time; a full pool refuses with 503 and recovers; slow and
stalled uploads hold no place in the pool and are cut off with 408; a 500 keeps the connection open.
Nothing here depends on timing: the tests wait for the server's counters, never for a clock."""

import asyncio
import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest
from serving_helpers import png_bytes, running

from remixformer.serving.app import create_app
from remixformer.serving.pool import InferencePool, QueueFull


class GatedPredictor:
    """A predictor whose predictions wait until ``gate`` is set (to fill the pool on purpose)."""

    def __init__(self, inner):
        self._inner = inner
        self.gate = threading.Event()
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def predict(self, *args, **kwargs):
        with self._lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            assert self.gate.wait(120), "the test never opened the gate"
            return self._inner.predict(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


class FailingPredictor:
    """A predictor whose predictions raise (an internal error) while ``fail`` is set."""

    def __init__(self, inner):
        self._inner = inner
        self.fail = True

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def predict(self, *args, **kwargs):
        if self.fail:
            raise RuntimeError("simulated bug")
        return self._inner.predict(*args, **kwargs)


def wait_for(condition, what, timeout=60.0):
    """Poll ``condition()`` until true; the timeout only guards against a hang, it asserts nothing."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def health(url):
    return httpx.get(f"{url}/health", timeout=30).json()


def distinct_cases(n):
    """``n`` different cases: images of different content and shape, different metadata, and every
    subset of the modalities, so that an answer crossing to another request cannot go unnoticed."""
    sexes, locations = ["female", "male", ""], ["head_neck", "trunk", "acral", ""]
    subsets = ["CDM", "CD", "CM", "DM", "C", "D", "M"]
    cases = []
    for i in range(n):
        mods = subsets[i % len(subsets)]
        case = {"files": {}, "data": {}}
        if "C" in mods:
            case["files"]["clinical"] = ("c.png", png_bytes(60 + i, 50 + 2 * i, seed=100 + i), "image/png")
        if "D" in mods:
            case["files"]["dermoscopy"] = ("d.png", png_bytes(70, 70 + i, seed=200 + i), "image/png")
        if "M" in mods:
            case["data"] = {
                "age": str(18 + 3 * i),
                "sex": sexes[i % 3] or "female",
                "location": locations[i % 4],
            }
        case["modalities"] = mods
        cases.append(case)
    return cases


def sequential_answer(predictor, case):
    images = {k: v[1] for k, v in case["files"].items()}
    return predictor.predict(metadata=case["data"] or None, **images).probabilities


def post_all_at_once(url, cases):
    barrier = threading.Barrier(len(cases))

    def one(case):
        with httpx.Client(timeout=120) as c:
            barrier.wait()
            return c.post(f"{url}/predict", files=case["files"] or None, data=case["data"] or None)

    with ThreadPoolExecutor(len(cases)) as ex:
        return list(ex.map(one, cases))


def test_simultaneous_distinct_requests_get_the_answers_they_get_one_at_a_time(predictor):
    cases = distinct_cases(21)
    expected = [sequential_answer(predictor, c) for c in cases]
    app = create_app(predictor, workers=3, queue_size=len(cases), max_uploads=len(cases))
    with running(app) as url:
        responses = post_all_at_once(url, cases)
        stats = health(url)
    for case, want, r in zip(cases, expected, responses):
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["modalities_used"] == case["modalities"]
        for task, probs in want.items():
            assert got["probabilities"][task] == pytest.approx(probs, abs=1e-5), (case["modalities"], task)
    assert stats["pool"]["submitted"] == len(cases) and stats["pool"]["in_progress_or_queued"] == 0
    assert stats["pool"]["peak"] <= 3 + len(cases)
    # the answers differ from each other: a crossing would have been seen
    assert len({str(r.json()["probabilities"]) for r in responses}) == len(cases)


def test_a_full_pool_refuses_with_retry_after_and_recovers(predictor):
    gated = GatedPredictor(predictor)
    app = create_app(gated, workers=1, queue_size=2)
    files = {"clinical": ("c.png", png_bytes(64, 64), "image/png")}
    with running(app) as url, ThreadPoolExecutor(3) as ex:
        accepted = []
        for n in (1, 2, 3):  # one running, two queued
            accepted.append(ex.submit(httpx.post, f"{url}/predict", files=files, timeout=120))
            wait_for(lambda n=n: health(url)["pool"]["in_progress_or_queued"] == n, f"{n} job(s) in the pool")
        refused = httpx.post(f"{url}/predict", files=files, timeout=60)
        assert refused.status_code == 503 and "busy" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        gated.gate.set()
        assert [f.result().status_code for f in accepted] == [200, 200, 200]
        assert gated.most_running == 1  # one worker: never two inferences at once
        wait_for(lambda: health(url)["pool"]["in_progress_or_queued"] == 0, "the pool to empty")
        stats = health(url)["pool"]
        assert stats["submitted"] == 3 and stats["rejected"] == 1 and stats["peak"] == 3
        assert httpx.post(f"{url}/predict", files=files, timeout=60).status_code == 200


def _stalled_upload(url, body_bytes=200, content_length=100_000):
    """A client that sends its headers and the first ``body_bytes`` of a multipart body, then stops."""
    parts = urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port), timeout=120)
    head = (
        b'--b0undary\r\nContent-Disposition: form-data; name="dermoscopy"; filename="d.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png_bytes(300, 300)
    )[:body_bytes]
    s.sendall(
        b"POST /predict HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: multipart/form-data; boundary=b0undary\r\n"
        + f"Content-Length: {content_length}\r\n\r\n".encode()
        + head
    )
    return s


def _read_answer(s):
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_stalled_uploads_hold_no_place_in_the_pool_and_are_cut_off(predictor):
    # nine clients that send 200 bytes and stop: before, they took all nine places of the pool
    # (1 worker + queue 8) for as long as they stayed connected, and everyone else got 503
    app = create_app(predictor, workers=1, queue_size=8, read_timeout=2.0, body_timeout=60.0)
    files = {"dermoscopy": ("d.png", png_bytes(64, 64), "image/png")}
    with running(app) as url:
        stalled = [_stalled_upload(url) for _ in range(9)]
        try:
            wait_for(lambda: health(url)["uploads"]["peak"] == 9, "nine uploads being received")
            r = httpx.post(f"{url}/predict", files=files, timeout=60)
            assert r.status_code == 200, r.text
            answers = [_read_answer(s) for s in stalled]
        finally:
            for s in stalled:
                s.close()
        for a in answers:
            assert a.startswith(b"HTTP/1.1 408 "), a[:200]
            assert b"sent nothing for 2 s" in a and b"connection: close" in a.lower()
        stats = health(url)
        assert stats["uploads"]["reading"] == 0 and stats["uploads"]["timed_out"] == 9
        assert stats["pool"]["submitted"] == 1 and stats["pool"]["rejected"] == 0


def test_a_body_dripped_byte_by_byte_meets_the_body_timeout(predictor):
    app = create_app(predictor, read_timeout=5.0, body_timeout=1.0)
    with running(app) as url:
        s = _stalled_upload(url)  # in the middle of the file part: more bytes are file data
        s.settimeout(0.2)
        answer = b""
        deadline = time.monotonic() + 60
        try:
            while not answer and time.monotonic() < deadline:
                try:
                    s.sendall(b"x")  # one byte at a time, well within the read timeout
                except OSError:
                    pass
                try:
                    answer = s.recv(65536)
                except TimeoutError:
                    continue
            # the headers and the body may come in separate segments: read on until the server closes
            s.settimeout(5.0)
            while answer:
                try:
                    more = s.recv(65536)
                except (TimeoutError, ConnectionResetError):
                    break
                if not more:
                    break
                answer += more
        finally:
            s.close()
        assert answer.startswith(b"HTTP/1.1 408 ") and b"longer than 1 s" in answer, answer[:300]


def test_too_many_uploads_at_once_are_refused_with_retry_after(predictor):
    app = create_app(predictor, max_uploads=2, read_timeout=30.0)
    with running(app) as url:
        stalled = [_stalled_upload(url) for _ in range(2)]
        try:
            wait_for(lambda: health(url)["uploads"]["reading"] == 2, "two uploads being received")
            r = httpx.post(f"{url}/predict", data={"sex": "male"}, timeout=60)
            assert r.status_code == 503 and "uploads being received" in r.json()["detail"]
            assert int(r.headers["Retry-After"]) >= 1
        finally:
            for s in stalled:
                s.close()
        wait_for(lambda: health(url)["uploads"]["reading"] == 0, "the closed uploads to be let go")
        assert httpx.post(f"{url}/predict", data={"sex": "male"}, timeout=60).status_code == 200


def test_a_500_keeps_the_keep_alive_connection_open(predictor, caplog):
    failing = FailingPredictor(predictor)
    app = create_app(failing)
    with running(app) as url:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        conn.request("POST", "/predict", body="sex=male", headers=headers)
        r = conn.getresponse()
        assert r.status == 500 and b"service log" in r.read()
        assert r.getheader("connection") != "close" and r.getheader("x-content-type-options") == "nosniff"
        local = conn.sock.getsockname()  # the same client socket must carry the next request
        failing.fail = False
        conn.request("POST", "/predict", body="sex=male", headers=headers)
        r = conn.getresponse()
        assert r.status == 200 and b'"modalities_used":"M"' in r.read()
        assert conn.sock.getsockname() == local
        conn.close()
    assert "simulated bug" in caplog.text  # the traceback is in the log, not in the answer


def test_pool_slots_are_released_even_when_the_client_goes_away():
    pool = InferencePool(workers=1, queue_size=1)
    started = threading.Event()
    release = threading.Event()

    def block():
        started.set()
        release.wait(5)
        return "done"

    async def scenario():
        first = pool.slot()
        second = pool.slot()
        with pytest.raises(QueueFull) as info:
            pool.slot()
        assert info.value.retry_after >= 1
        t1 = asyncio.ensure_future(first.run(block))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        t2 = asyncio.ensure_future(second.run(block))  # queued behind the first
        await asyncio.sleep(0.05)
        t2.cancel()  # its client disconnected: the queued job never runs
        release.set()
        assert await t1 == "done"
        with pytest.raises(asyncio.CancelledError):
            await t2
        for _ in range(100):
            if pool.stats()["in_progress_or_queued"] == 0:
                break
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert pool.stats()["in_progress_or_queued"] == 0
    pool.slot().release()
    pool.shutdown()
