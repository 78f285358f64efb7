"""Run directories shared by training and pretraining: the decision, when a run starts, between
continuing its training state and starting it (again) from the beginning; which config changes a
resumed run allows; seeding; and the directory itself (file log, resolved config) on global rank 0."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from remixformer.config import dump_yaml, flatten_dict, to_dict
from remixformer.engine.distributed import is_rank_zero
from remixformer.serialization import remove_temporary_files

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def changed_keys(old: Any, new: Any, allowed: Sequence[str] = ()) -> list[str]:
    """The dotted keys in which two configs (dataclasses) differ, except those in ``allowed``."""
    a, b = flatten_dict(to_dict(old)), flatten_dict(to_dict(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in allowed)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch in this process and in its data-loader workers."""
    import lightning as L

    L.seed_everything(seed, workers=True, verbose=False)


@contextlib.contextmanager
def run_directory(run_dir: Path, cfg: Any, log_name: str) -> Iterator[bool]:
    """On global rank 0: create ``run_dir``, copy the log into ``run_dir/log_name`` and write the
    resolved config to ``config.yaml``. Yields whether this process writes the run's files; the file
    log is detached on exit."""
    handler = None
    writer = is_rank_zero()
    if writer:
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / log_name)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logging.getLogger().addHandler(handler)
        dump_yaml(cfg, run_dir / "config.yaml")
    try:
        yield writer
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def prepare_run_dir(run_dir: Path, state_file: str, resume: bool) -> bool:
    """Whether the run in ``run_dir`` continues from its training state; removes the temporary files of
    writes a kill interrupted (global rank 0).

    A run can be continued once its first training state is complete (``checkpoints/<state_file>``).
    A run stopped before that (during its first epoch, or while that state was being written) has
    nothing to continue: with ``resume`` it starts again from the beginning, as it does without. A
    directory with a complete training state or a finished run is never started over.
    """
    run_dir = Path(run_dir)
    state = run_dir / "checkpoints" / state_file
    if is_rank_zero():
        for folder in (run_dir, run_dir / "checkpoints"):
            removed = remove_temporary_files(folder)
            if removed:
                log.info(
                    "removed %d temporary file(s) of writes that were interrupted: %s",
                    len(removed),
                    ", ".join(p.name for p in removed),
                )
    if state.exists():
        if not resume:
            raise ValueError(
                f"{run_dir} already holds a run; pass --resume to continue it, or choose another name / "
                "--run-dir"
            )
        return True
    if (run_dir / "summary.json").exists():
        raise ValueError(f"{run_dir} holds a finished run (summary.json); choose another name / --run-dir")
    started = (run_dir / "config.yaml").exists()
    if resume and not started:
        raise ValueError(
            f"--resume: no training state at {state} and no run in {run_dir}; start the run without --resume"
        )
    if started:
        log.warning(
            "%s: the run stopped before its first training state was complete (%s); starting it again "
            "from the beginning",
            run_dir,
            state.name,
        )
    return False
