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


def load_classifier(cfg: ExperimentConfig, view: InputView, num_classes: int, run_dir: Path):
    """The trained classifier of a finished run (its best epoch), reading ``view``."""
    model = build_for(cfg, view, num_classes, None)
    model.load_weights(str(Path(run_dir) / "best.weights.h5"))
    return model


__all__ = ["build_for", "load_classifier"]
