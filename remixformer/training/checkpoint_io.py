"""Lightning training-state checkpoints without pickling: tensors in safetensors, the rest as JSON,
written atomically (a kill during a write leaves the previous file intact); and the decision, when a
run starts, between continuing its training state and starting it (again) from the beginning."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.io import CheckpointIO

from remixformer.serialization import load_tree, save_tree

log = logging.getLogger(__name__)


class SafetensorsCheckpointIO(CheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        save_tree(path, checkpoint, metadata={"format": "remixformer-training-state"})

    def load_checkpoint(
        self, path, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict:
        device = map_location if isinstance(map_location, str) else "cpu"
        return load_tree(path, device=device)

    def remove_checkpoint(self, path) -> None:
        if Path(path).exists():
            os.remove(path)


def prepare_run_dir(run_dir: Path, state_file: str, resume: bool) -> bool:
    """Whether the run in ``run_dir`` continues from its training state; removes the temporary files of
    writes a kill interrupted (global rank 0).

    A run can be continued once its first training state is complete (``checkpoints/<state_file>``).
    A run stopped before that (during its first epoch, or while that state was being written) has
    nothing to continue: with ``resume`` it starts again from the beginning, as it does without. A
    directory with a complete training state or a finished run is never started over.
    """
    from remixformer.serialization import remove_temporary_files
    from remixformer.training.trainer import is_rank_zero

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
