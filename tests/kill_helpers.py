"""Real processes killed with SIGKILL at chosen moments (the pause points of ``remixformer.faults``).

A command is started in its own process group with ``REMIXFORMER_PAUSE_AT`` naming a point; when it
gets there it writes the pause file and sleeps; the test then kills the whole group (a DDP launcher
with its workers) with SIGKILL, as ``kill -9`` would, and waits for it to be gone; DDP workers that the
launcher put in sessions of their own are found by the pause file in their environment and killed too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import remixformer

REPO = Path(remixformer.__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child ``python -m remixformer``: this checkout first on the path, one
    thread (tiny models; and the same arithmetic in every process)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("REMIXFORMER_PAUSE_AT", None)
    env.pop("REMIXFORMER_PAUSE_FILE", None)
    env.update(extra)
    return env


def remixformer_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "remixformer", "-q", *args]


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else ""


def run(cmd: list[str], log: Path, timeout: float = 900) -> None:
    """Run ``cmd`` to its end; it must succeed."""
    with open(log, "ab") as out:
        done = subprocess.run(cmd, env=child_env(), stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{_tail(log)}"


def kill_at(cmd: list[str], point: str, log: Path, timeout: float = 900) -> None:
    """Run ``cmd`` until it pauses at ``point`` (``name`` or ``name#n``), then SIGKILL its process group."""
    pause_file = log.with_suffix(f".paused.{time.monotonic_ns()}")
    env = child_env(REMIXFORMER_PAUSE_AT=point, REMIXFORMER_PAUSE_FILE=str(pause_file))
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not pause_file.exists():
            if proc.poll() is not None:
                raise AssertionError(
                    f"the process ended ({proc.returncode}) before it reached {point!r}:\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the process did not reach {point!r} in {timeout} s:\n{_tail(log)}")
            time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        # torch's elastic launcher starts each DDP worker in a session of its own, so the group kill
        # above does not reach them; they would sleep on as orphans (found after CI runs). Kill every
        # process started with this call's pause file, and check none is left.
        marker = f"REMIXFORMER_PAUSE_FILE={pause_file}".encode()
        for pid in _processes_with_env(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while _processes_with_env(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _processes_with_env(marker), "processes of the killed command are still alive"
    assert proc.returncode == -signal.SIGKILL, proc.returncode
    pause_file.unlink()


def _processes_with_env(marker: bytes) -> list[int]:
    """PIDs of this user's live processes whose environment holds ``marker`` (Linux /proc; elsewhere none)."""
    found = []
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return found
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                status = (entry / "status").read_text().splitlines()
                state = next((line for line in status if line.startswith("State:")), "")
                if "Z" not in state.split()[1:2]:  # a zombie is already dead
                    found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def leftover_temporary_files(*folders: Path) -> list[Path]:
    return sorted(p for f in folders if f.is_dir() for p in f.iterdir() if p.name.endswith(".tmp"))
