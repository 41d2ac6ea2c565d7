"""Scores of a trained classifier on the evaluation splits, and the closing table of a command."""

from __future__ import annotations

from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.data.view import InputView
from ird_tf.runs.results import SPLITS, RunResult


def evaluate(classifier, ds_by_split: dict, view: InputView, class_names, run_dir: Path) -> dict[str, dict]:
    """Metrics of ``classifier`` reading ``view`` on each split, written as ``metrics_<split>.json/.csv``."""
    from ird_tf.evaluation.metrics import classification_metrics, predict_proba, write_metrics

    out = {}
    for split, ds in ds_by_split.items():
        y_true, y_prob = predict_proba(classifier, ds, input_key=view.key)
        m = classification_metrics(y_true, y_prob, len(class_names), class_names=list(class_names))
        write_metrics(m, run_dir / f"metrics_{split}.json", run_dir / f"metrics_{split}.csv")
        out[split] = m
    return out


def summary_table(cfg: ExperimentConfig, teacher: RunResult | None, student: RunResult | None) -> str:
    """The closing table: teacher at its magnification and student at its own, val and test scores."""
    from ird_tf.evaluation.metrics import format_table

    rows = []
    for who, res, mag in (("teacher", teacher, cfg.data.teacher_mag),
                          ("student", student, cfg.data.student_mag)):
        if res is not None:
            row = {"model": who, "magnification": f"{mag:g}x", "run": str(res.run_dir)}
            for split in SPLITS:
                m = res.metrics.get(split, {})
                row[f"{split} bal. acc."] = m.get("balanced_accuracy")
                row[f"{split} kappa"] = m.get("kappa")
            rows.append(row)
    cols = ["model", "magnification", *(f"{s} {k}" for s in SPLITS for k in ("bal. acc.", "kappa")), "run"]
    return format_table(rows, cols, digits=3)


__all__ = ["evaluate", "summary_table"]
