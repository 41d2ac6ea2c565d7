"""A finished run's result file: written last and atomically, so its presence means "finished". TF-free."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ird_tf.files import write_json

SPLITS = ("val", "test")


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, dict]  # split -> metrics
    seconds: float
    #: where the session that trained it spent its time (``ird_tf.training.timing.Stopwatch.summary``)
    timing: dict | None = None


def read_result(run_dir: Path) -> RunResult | None:
    """A finished run's metrics, or None when the run has not finished."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return RunResult(Path(run_dir), d["metrics"], d["seconds"], d.get("timing"))


def write_result(result: RunResult) -> None:
    extra = {"timing": result.timing} if result.timing else {}
    write_json(result.run_dir / "result.json", {"metrics": result.metrics, "seconds": result.seconds, **extra})


FAILED = "failed.json"
#: files that hold trained state worth keeping after a failure (the backup's commit point, checkpoints)
TRAINED_STATE = ("backup/latest.json", "best.weights.h5", "last.weights.h5")


def has_trained_state(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).is_file() for name in TRAINED_STATE)


def mark_failed(run_dir: Path, error: BaseException) -> None:
    """A run that failed (not killed) is whole or absent: without trained state (it failed before its
    first epoch ended: bad initial weights, a divergence in epoch 1) its directory is removed; with it
    (a later divergence, a full disk) the directory is kept, its checkpoints intact, and marked with
    ``failed.json`` (the reason), which the next identical command clears before it resumes."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    if not has_trained_state(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    try:
        write_json(run_dir / FAILED, {"reason": str(error), "error": type(error).__name__, "time": time.time()})
    except OSError:  # the disk that failed may still be full: the exception itself tells the user
        pass


def read_failed(run_dir: Path) -> dict | None:
    """The failure marker of a run (``reason``, ``error``, ``time``), or None."""
    path = Path(run_dir) / FAILED
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return {"reason": f"unreadable {FAILED}", "error": "", "time": 0}


__all__ = ["FAILED", "SPLITS", "RunResult", "has_trained_state", "mark_failed", "read_failed", "read_result",
           "write_result"]
