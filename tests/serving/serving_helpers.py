"""Builders shared by the serving tests."""

import io
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import uvicorn
from PIL import Image

from remixformer.schema import AGE_BINS, AGE_RANGE, MetadataSchema, boolean, categorical, numeric

TASKS = {"diag": ["BCC", "NEV", "MEL", "MISC", "SK"], "pn": ["ABS", "TYP", "ATP"]}
SCHEMA = MetadataSchema(
    [
        numeric("age", AGE_BINS, description="years", value_range=AGE_RANGE),
        categorical("sex", ["female", "male"]),
        categorical("location", ["head_neck", "trunk", "upper_limbs", "lower_limbs", "acral"]),
        boolean("changed"),
    ],
    name="test",
)


def rgb_array(w=80, h=60, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png_bytes(w=80, h=60, seed=0, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(rgb_array(w, h, seed)).save(buf, format=fmt)
    return buf.getvalue()


@contextmanager
def running(app):
    """``app`` served by uvicorn on a free local port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY as uvicorn
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", backlog=256))
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
