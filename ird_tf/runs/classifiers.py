"""Classifiers of the runs: built for an input view, and loaded from a finished run (best epoch)."""

from __future__ import annotations

from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.data.view import InputView


def build_for(cfg: ExperimentConfig, view: InputView, num_classes: int, weights: str | None):
    """A fresh classifier on ``view``'s input size, named after its role: the Teacher's backbone, or
    the Student's (``model.student_backbone``, default the Teacher's)."""
    from ird_tf.models import build_classifier

    backbone = cfg.model.backbone if view.is_teacher else cfg.model.student
    return build_classifier(backbone, num_classes, (view.size, view.size, 3), weights,
                            name="teacher" if view.is_teacher else "student")


def check_weights(cfg: ExperimentConfig, num_classes: int, *, student: bool = True) -> None:
    """Loads each initial-weights file the run will use (the Teacher's ``model.weights``; with
    ``student``, the Student's ``model.student_weights`` or ``model.weights``) into a throw-away
    classifier of its role, so a file that does not fit is reported before any run directory exists.
    Raises :class:`~ird_tf.errors.WeightsError` naming the setting and the file. ``imagenet`` is
    left to the build (it may download)."""
    from ird_tf.errors import WeightsError

    d, m = cfg.data, cfg.model
    uses = [("model.weights", m.weights, InputView.teacher(d))]
    if student:
        key = "model.student_weights" if m.student_weights else "model.weights"
        uses.append((key, m.student_weights or m.weights, InputView.student(d)))
    for key, weights, view in uses:
        if weights in (None, "imagenet"):
            continue
        try:
            build_for(cfg, view, num_classes, weights)
        except WeightsError as e:
            role = "Teacher" if view.is_teacher else "Student"
            raise WeightsError(f"{key}={weights!r} ({role}): {e}") from e


def load_classifier(cfg: ExperimentConfig, view: InputView, num_classes: int, run_dir: Path):
    """The trained classifier of a finished run (its best epoch), reading ``view``."""
    model = build_for(cfg, view, num_classes, None)
    model.load_weights(str(Path(run_dir) / "best.weights.h5"))
    return model


__all__ = ["build_for", "check_weights", "load_classifier"]
