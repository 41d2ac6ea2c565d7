"""The classification scores of the project, defined once (NumPy and scikit-learn only, no TensorFlow).

Training's per-epoch validation (``history.csv``, ``best.json``, TensorBoard) and evaluation's metric
files (``metrics_<split>.json``) both call :func:`classification_scores`, so the same weights on the
same split give the same numbers in every file. The rules:

- **quadratic kappa**: Cohen's kappa with quadratic weights over the classes ``0..num_classes-1``. It
  is *undefined* (NaN in memory, ``null`` in JSON files, empty or ``nan`` in CSV files) when
  labels and predictions leave nothing to agree on by chance, e.g. both a single class. It is never
  replaced by 0: "no better than chance" and "cannot be measured" are different statements.
- **macro F1**: the mean F1 over the classes present in the labels *or* the predictions
  (scikit-learn's default); a class that is in neither is left out rather than counted as 0.
- **balanced accuracy**: mean recall over the classes present in the labels (scikit-learn).
- **accuracy**: the share of correct predictions.

Model selection (:func:`improves`) never prefers an undefined value over a number: a number always
beats NaN, NaN never beats anything. Among equal values the first one is kept.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn import metrics as skm

SCORES = ("balanced_accuracy", "kappa", "macro_f1", "accuracy")


def as_class_indices(y_pred: Sequence | np.ndarray) -> np.ndarray:
    """Class indices ``[N]`` from indices ``[N]`` or scores (probabilities or logits) ``[N, C]``."""
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = y_pred.argmax(axis=1)
    return y_pred.reshape(-1)


def quadratic_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Quadratic-weighted Cohen's kappa over classes ``0..num_classes-1``; NaN when undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined: reported as NaN, not as a warning
        kappa = skm.cohen_kappa_score(y_true, y_pred, labels=list(range(num_classes)), weights="quadratic")
    return float(kappa) if np.isfinite(kappa) else math.nan


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred`` (scikit-learn's default)."""
    return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))


def classification_scores(y_true: Sequence[int] | np.ndarray, y_pred: Sequence | np.ndarray,
                          num_classes: int) -> dict[str, float]:
    """``balanced_accuracy``, ``kappa`` (quadratic), ``macro_f1`` and ``accuracy`` of predictions
    ``y_pred`` (class indices ``[N]`` or scores ``[N, C]``, arg-maxed) against ``y_true``."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = as_class_indices(y_pred)
    if y_true.size == 0 or y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape}: expected equal non-zero lengths")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(f"{name} holds classes outside 0..{num_classes - 1}: {sorted(set(y.tolist()))}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a class absent from the labels
        balanced = float(skm.balanced_accuracy_score(y_true, y_pred))
    return {
        "balanced_accuracy": balanced,
        "kappa": quadratic_kappa(y_true, y_pred, num_classes),
        "macro_f1": macro_f1(y_true, y_pred),
        "accuracy": float(np.mean(y_true == y_pred)),
    }


def mean_cross_entropy(y_true: Sequence[int] | np.ndarray, logits: np.ndarray) -> float:
    """Mean cross-entropy (nats) of logits ``[N, C]`` against class indices ``[N]``, in float64."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(logits)), np.asarray(y_true).reshape(-1)].mean())


def improves(value: float | None, best: float | None, mode: str = "max") -> bool:
    """Whether ``value`` replaces ``best`` in model selection (``mode`` "max" or "min").

    ``best is None``: nothing chosen yet, any value (even NaN) is taken, so a run whose every value is
    undefined still has a best checkpoint (its first epoch). A number beats NaN; NaN never beats
    anything; a tie keeps the earlier one.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r}; expected 'max' or 'min'")
    if best is None:
        return True
    value_ok = value is not None and math.isfinite(value)
    best_ok = math.isfinite(best)
    if not value_ok:
        return False
    if not best_ok:
        return True
    return value > best if mode == "max" else value < best


def json_safe(x):
    """A copy of ``x`` for strict JSON: NaN and infinities become None, NumPy values Python ones."""
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


__all__ = [
    "SCORES", "as_class_indices", "classification_scores", "improves", "json_safe", "macro_f1",
    "mean_cross_entropy", "quadratic_kappa",
]
