"""Classification metrics of a trained model, their files, and the seed summaries of result tables.

Metrics come from scikit-learn so the numbers match what others compute on the same predictions; the
scalar scores are defined once in :mod:`ird_tf.scoring` (shared with training's validation).
Undefined values (the kappa of a set with a single class, the recall of a class absent from the
labels) are NaN in memory and ``null`` / empty in the JSON and CSV files.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from sklearn import metrics as skm

from ird_tf.errors import DataError
from ird_tf.files import write_text
from ird_tf.models.traced import traced
from ird_tf.scoring import SCORES, as_class_indices, classification_scores, json_safe

SCALARS = SCORES


def predict_proba(
    model: keras.Model, dataset: tf.data.Dataset, input_key: str = "lr"
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities over one pass of ``dataset`` (batches of ``({"hr", "lr"}, label)``).

    The model runs in inference mode on ``x[input_key]``; it may return ``{"logits": ...}`` or the logits.
    Returns ``y_true`` int64 ``[N]`` and ``y_prob`` float32 ``[N, C]``.
    """

    def make():
        @tf.function(reduce_retracing=True)
        def proba(images: tf.Tensor) -> tf.Tensor:
            out = model(images, training=False)
            logits = out["logits"] if isinstance(out, Mapping) else out
            return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)

        return proba

    proba = traced(model, "proba", make)  # one trace per model, also across the runs it trains

    labels, probs = [], []
    for element in dataset:
        if not (isinstance(element, tuple) and len(element) == 2 and isinstance(element[0], Mapping)):
            raise DataError("predict_proba: expected a dataset of ({'hr', 'lr'}, label) batches "
                            "(evaluation_dataset(..., labeled=True))")
        x, y = element
        if input_key not in x:
            raise DataError(f"predict_proba: input_key={input_key!r} is not in the batch keys {sorted(x)}")
        probs.append(proba(x[input_key]).numpy())
        labels.append(np.asarray(y).reshape(-1))
    if not probs:
        raise DataError("predict_proba: the dataset is empty")
    return np.concatenate(labels).astype(np.int64), np.concatenate(probs).astype(np.float32)


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Balanced accuracy, quadratic-weighted Cohen's kappa, macro F1, accuracy, the confusion matrix
    (rows = true class, over ``range(num_classes)`` so absent classes keep their row) and per-class recall.

    ``y_pred`` is class indices ``[N]`` or probabilities ``[N, C]`` (arg-maxed). The four scores come
    from :func:`ird_tf.scoring.classification_scores`, the one definition training's validation uses
    too (undefined kappa is NaN; macro F1 averages the classes present in labels or predictions).
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = as_class_indices(y_pred)
    names = [str(c) for c in class_names] if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names, expected num_classes={num_classes}")
    result: dict[str, Any] = classification_scores(y_true, y_pred, num_classes)  # checks the inputs
    labels = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # absent classes: reported as NaN, not as warnings
        recall = skm.recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    result.update(
        n=int(y_true.size),
        class_names=names,
        confusion_matrix=skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        per_class_recall={n: float(r) for n, r in zip(names, recall, strict=True)},
    )
    return result


def _is_scalar(x: Any) -> bool:
    return x is None or isinstance(x, str | bool | int | float | np.generic)


def scalar_row(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar entries of ``metrics``; dicts of scalars are flattened as ``key.sub`` (per-class recall)."""
    row: dict[str, Any] = {}
    for key, value in json_safe(metrics).items():
        if _is_scalar(value):
            row[key] = value
        elif isinstance(value, dict) and all(_is_scalar(v) for v in value.values()):
            row.update({f"{key}.{k}": v for k, v in value.items()})
    return row


def write_metrics(
    metrics: Mapping[str, Any], json_path: str | Path, csv_path: str | Path
) -> tuple[Path, Path]:
    """Everything as JSON; the scalar metrics (:func:`scalar_row`) as a one-row CSV with a header. Both
    files are written atomically."""
    json_path, csv_path = Path(json_path), Path(csv_path)
    write_text(json_path, json.dumps(json_safe(metrics), indent=2, allow_nan=False) + "\n")
    row = scalar_row(metrics)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(row), lineterminator="\r\n")
    writer.writeheader()
    writer.writerow({k: "" if v is None else v for k, v in row.items()})
    write_text(csv_path, buf.getvalue())
    return json_path, csv_path


def summarize_seeds(runs: Sequence[Mapping[str, Any]], ddof: int = 1) -> dict[str, dict[str, Any]]:
    """Mean ± standard deviation of every numeric scalar metric present in all ``runs`` (one per seed).

    ``ddof=1`` is the sample standard deviation (the spread expected between seeds); it is 0 for a
    single run. Undefined values (None/NaN) are left out and ``n`` counts the values used.
    """
    if not runs:
        raise ValueError("summarize_seeds: expected at least one metrics dict")
    rows = [scalar_row(r) for r in runs]
    summary: dict[str, dict[str, Any]] = {}
    for key, first in rows[0].items():
        if isinstance(first, bool) or not all(key in r for r in rows):
            continue
        values = [r[key] for r in rows]
        if not all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
            continue
        kept = np.array([v for v in values if v is not None], dtype=np.float64)
        summary[key] = {
            "mean": float(kept.mean()) if kept.size else None,
            "std": float(kept.std(ddof=ddof)) if kept.size > ddof else (0.0 if kept.size else None),
            "n": int(kept.size),
            "values": [None if v is None else float(v) for v in values],
        }
    return summary


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, Mapping) and "mean" in value:
        if value["mean"] is None:
            return "n/a"
        return f"{value['mean']:.{digits}f} ± {(value.get('std') or 0.0):.{digits}f}"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 4) -> str:
    """A Markdown table of ``rows`` (dicts) over ``columns``; floats get ``digits`` decimals,
    :func:`summarize_seeds` entries print as ``mean ± std``, missing values as ``n/a``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c), digits) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
