"""Stability of a learning curve: how much a validation score jumps between epochs late in training.
TF-free."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise


def late_epochs(n_epochs: int, fraction: float = 1 / 3) -> int:
    """Number of epochs in the last ``fraction`` of a run of ``n_epochs`` (at least 2 when the run has
    2, so there is one epoch-to-epoch step to measure): 20 epochs -> 7 (epochs 14..20)."""
    if n_epochs < 2:
        return n_epochs
    return min(n_epochs, max(2, math.ceil(n_epochs * fraction)))


def max_late_swing(values: Sequence[float], fraction: float = 1 / 3) -> float:
    """The largest absolute epoch-to-epoch change of ``values`` (one per epoch) within the last
    ``fraction`` of the epochs; NaN with fewer than two epochs."""
    tail = [float(v) for v in values][-late_epochs(len(values), fraction):] if len(values) else []
    if len(tail) < 2:
        return float("nan")
    return max(abs(b - a) for a, b in pairwise(tail))


__all__ = ["late_epochs", "max_late_swing"]
