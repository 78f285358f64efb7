"""Named pause points, so that tests can kill a real process at a chosen moment.

With ``REMIXFORMER_PAUSE_AT=<point>`` (or ``<point>#<n>``: its n-th occurrence in this process) in the
environment, the process that reaches ``<point>`` writes ``<pid> <point>`` to the file named by
``REMIXFORMER_PAUSE_FILE`` and then sleeps until it is killed; the test waits for the file and sends
SIGKILL. Without the variable a pause point costs one environment lookup.

Points: ``write:<file name>`` (an atomic write has made its empty temporary file), ``replace:<file
name>`` (the temporary file is complete, just before ``os.replace``), ``batch:<epoch>:<batch>`` (a
training batch is about to start; every DDP process pauses there).
"""

from __future__ import annotations

import os
import time

PAUSE_AT = "REMIXFORMER_PAUSE_AT"
PAUSE_FILE = "REMIXFORMER_PAUSE_FILE"

_seen: dict[str, int] = {}


def enabled() -> bool:
    return bool(os.environ.get(PAUSE_AT))


def pause_point(name: str) -> None:
    """Pause here for good if the environment names this point (see the module docstring)."""
    spec = os.environ.get(PAUSE_AT)
    if not spec:
        return
    point, _, nth = spec.partition("#")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] != int(nth or 1):
        return
    target = os.environ.get(PAUSE_FILE)
    if target:
        tmp = f"{target}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{os.getpid()} {name}\n")
        os.replace(tmp, target)
    while True:  # until killed
        time.sleep(3600)
