"""Evaluation: predictions of a trained model, scikit-learn metrics, metric files and seed summaries."""

from ird_tf.evaluation.metrics import (
    classification_metrics,
    format_table,
    predict_proba,
    summarize_seeds,
    write_metrics,
)

__all__ = [
    "classification_metrics",
    "format_table",
    "predict_proba",
    "summarize_seeds",
    "write_metrics",
]
