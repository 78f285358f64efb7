"""A bounded inference pool: ``workers`` threads and at most ``queue_size`` jobs waiting for them.

A request takes a slot (:meth:`InferencePool.slot`) once its body has been received and checked, so
that a client that uploads slowly (or stalls) holds no place in the pool; a full pool refuses at once
(:class:`QueueFull`, answered 503 with ``Retry-After``). The slot is freed when the job has finished
running, not when the client goes away, so the bound holds for the work actually in the pool.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class QueueFull(RuntimeError):
    """Every worker is busy and the queue is full; ``retry_after`` is a guess in whole seconds."""

    def __init__(self, retry_after: int, capacity: int) -> None:
        super().__init__(f"the service is busy ({capacity} requests in progress or queued); retry later")
        self.retry_after = retry_after
        self.capacity = capacity


class Slot:
    """The right to run one job in the pool; release it exactly once (``run`` does that itself)."""

    def __init__(self, pool: InferencePool) -> None:
        self._pool = pool
        self._released = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker thread; the slot is released when it finishes."""
        self._pool._count_submitted()

        def job() -> T:
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._pool._record(time.perf_counter() - start)
                self.release()

        try:
            future = self._pool._executor.submit(job)
        except BaseException:
            self.release()
            raise
        # a job cancelled before it started (its client went away) never runs its ``finally``
        future.add_done_callback(lambda f: self.release() if f.cancelled() else None)
        return await asyncio.wrap_future(future)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release()


class InferencePool:
    def __init__(self, workers: int = 1, queue_size: int = 8) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.workers = workers
        self.queue_size = queue_size
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remixformer-infer")
        self._lock = threading.Lock()
        self._in_use = 0
        self._peak = 0
        self._submitted = 0
        self._rejected = 0
        self._mean_seconds = 0.0  # moving average of a job's running time

    def slot(self) -> Slot:
        """Take a slot, or raise :class:`QueueFull` when ``workers + queue_size`` are taken."""
        with self._lock:
            if self._in_use >= self.capacity:
                self._rejected += 1
                per_job = self._mean_seconds or 1.0
                retry = max(1, math.ceil(per_job * self._in_use / self.workers))
                raise QueueFull(retry, self.capacity)
            self._in_use += 1
            self._peak = max(self._peak, self._in_use)
        return Slot(self)

    def _release(self) -> None:
        with self._lock:
            self._in_use -= 1

    def _count_submitted(self) -> None:
        with self._lock:
            self._submitted += 1

    def _record(self, seconds: float) -> None:
        with self._lock:
            a = 0.2 if self._mean_seconds else 1.0
            self._mean_seconds = (1 - a) * self._mean_seconds + a * seconds

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "workers": self.workers,
                "queue_size": self.queue_size,
                "in_progress_or_queued": self._in_use,
                "peak": self._peak,
                "submitted": self._submitted,
                "rejected": self._rejected,
                "mean_job_seconds": round(self._mean_seconds, 4),
            }

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
