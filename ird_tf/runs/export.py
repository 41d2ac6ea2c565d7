"""The student's export for TF Serving, once per run and weights."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.data.view import InputView
from ird_tf.progress import say


def export_student(student, cfg: ExperimentConfig, class_names, run_dir: Path, export_dir: Path) -> Path:
    """Exports the student's best weights as the next version under ``export_dir``, unless a version of
    the same run and weights is there already (a run killed after its export and resumed)."""
    from ird_tf.export.serving import export_for_serving, find_export

    d = cfg.data
    for tmp in export_dir.glob(".tmp-*") if export_dir.is_dir() else ():  # an export killed half-way
        shutil.rmtree(tmp, ignore_errors=True)  # (this process holds the run: no one else writes here)
    weights = hashlib.sha256((run_dir / "best.weights.h5").read_bytes()).hexdigest()
    found = find_export(export_dir, run_dir=str(run_dir), weights_sha256=weights)
    if found is not None:
        say(f"student already exported for TF Serving: {found}")
        return found
    path = export_for_serving(
        student, export_dir, input_size=InputView.student(d).size, class_names=class_names, factor=d.factor,
        mode=d.mode, metadata={"teacher_mag": d.teacher_mag, "student_mag": d.student_mag,
                               "backbone": cfg.model.student, "run_dir": str(run_dir),
                               "weights_sha256": weights},
    )
    say(f"student exported for TF Serving: {path}")
    return path


__all__ = ["export_student"]
