"""The service under load: many simultaneous requests against a real uvicorn server, each answered
200 or 503 (with Retry-After), none lost; the pool never holds more than workers + queue_size."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serving_helpers import png_bytes, running

from remixformer.serving.app import create_app
from remixformer.serving.pool import InferencePool, QueueFull


class SlowPredictor:
    """A predictor whose every prediction takes ``delay`` seconds (to fill the queue on purpose)."""

    def __init__(self, inner, delay):
        self._inner, self.delay = inner, delay
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
            time.sleep(self.delay)
            return self._inner.predict(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


def fire(url, n, files, data=None):
    """``n`` simultaneous POST /predict; returns the responses (an exception object if one failed)."""
    barrier = threading.Barrier(n)

    def one(_):
        with httpx.Client(timeout=120) as c:
            barrier.wait()
            try:
                return c.post(f"{url}/predict", files=files, data=data)
            except httpx.HTTPError as e:
                return e

    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


def test_many_simultaneous_requests_are_all_answered(predictor):
    app = create_app(predictor, workers=2, queue_size=4)
    n = 32
    files = {"dermoscopy": ("d.png", png_bytes(64, 64), "image/png")}
    with running(app) as url:
        responses = fire(url, n, files, {"sex": "male"})
        assert all(isinstance(r, httpx.Response) for r in responses), [
            r for r in responses if not isinstance(r, httpx.Response)
        ]
        codes = [r.status_code for r in responses]
        assert len(codes) == n and set(codes) <= {200, 503}, codes
        assert codes.count(200) >= 1
        for r in responses:
            body = r.json()
            if r.status_code == 200:
                assert body["modalities_used"] == "DM"
            else:
                assert int(r.headers["Retry-After"]) >= 1 and "busy" in body["detail"]
        health = httpx.get(f"{url}/health").json()
        stats = health["pool"]
        assert stats["submitted"] == codes.count(200)
        assert stats["rejected"] == codes.count(503)
        assert stats["peak"] <= 2 + 4
        assert stats["in_progress_or_queued"] == 0
        # still serving afterwards
        assert httpx.post(f"{url}/predict", files=files).status_code == 200


def test_a_full_queue_answers_503_with_retry_after(predictor):
    slow = SlowPredictor(predictor, delay=1.0)
    app = create_app(slow, workers=1, queue_size=2)
    files = {"clinical": ("c.png", png_bytes(64, 64), "image/png")}
    with running(app) as url:
        responses = fire(url, 8, files)
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] * 3 + [503] * 5, codes  # one running, two queued, the rest refused
        refused = [r for r in responses if r.status_code == 503]
        assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
        assert slow.most_running == 1  # one worker: never two inferences at once
        again = httpx.post(f"{url}/predict", files=files, timeout=60)
        assert again.status_code == 200


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
