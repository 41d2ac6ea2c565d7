"""A finished run's result file: written last and atomically, so its presence means "finished". TF-free."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ird_tf.files import write_json

SPLITS = ("val", "test")


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, dict]  # split -> metrics
    seconds: float


def read_result(run_dir: Path) -> RunResult | None:
    """A finished run's metrics, or None when the run has not finished."""
    path = Path(run_dir) / "result.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return RunResult(Path(run_dir), d["metrics"], d["seconds"])


def write_result(result: RunResult) -> None:
    write_json(result.run_dir / "result.json", {"metrics": result.metrics, "seconds": result.seconds})


__all__ = ["SPLITS", "RunResult", "read_result", "write_result"]
