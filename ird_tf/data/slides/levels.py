"""Which level of a slide to read a given µm/px from, and how.

Rule: the coarsest level whose µm/px is at or finer than the target, with a tolerance (default 5 %)
because real slides have inexact downsamples (4.0011, 16.0045) and µm/px such as 0.2527. So level 0
is used only when no coarser level is fine enough. A level within the tolerance of the target is read
as is; a finer one is reduced by the ratio (a block mean when the ratio is a whole number, as the
training pipeline's view; an area resize otherwise). A slide whose level 0 is coarser than the target
beyond the tolerance cannot give it: that is a :class:`~ird_tf.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ird_tf.errors import DataError

TOLERANCE = 0.05


@dataclass(frozen=True)
class ReadPlan:
    """Read ``level`` (µm/px ``level_mpp``) and reduce by ``scale`` = target / level µm/px (1: as is)."""

    level: int
    level_mpp: float
    target_mpp: float
    scale: float  # 1.0 when within tolerance

    @property
    def whole(self) -> int | None:
        """The scale as a whole number when it is one (within the tolerance), else None."""
        k = int(round(self.scale))
        return k if k >= 1 and abs(self.scale - k) <= TOLERANCE * k else None

    def read_side(self, side: int) -> int:
        """Pixels of the level that hold ``side`` pixels at the target µm/px."""
        k = self.whole
        return side * k if k else int(round(side * self.scale))


def choose_level(downsamples: Sequence[float], mpp0: float, target_mpp: float,
                 tolerance: float = TOLERANCE, name: str = "slide") -> ReadPlan:
    """The :class:`ReadPlan` for ``target_mpp`` on levels with ``downsamples`` of a level 0 at ``mpp0``."""
    if mpp0 <= 0 or target_mpp <= 0:
        raise DataError(f"{name}: µm/px must be > 0 (level 0 {mpp0!r}, target {target_mpp!r})")
    mpps = [mpp0 * float(d) for d in downsamples]
    fine_enough = [i for i, m in enumerate(mpps) if m <= target_mpp * (1 + tolerance)]
    if not fine_enough:
        raise DataError(f"{name}: level 0 is {mpp0:g} µm/px, coarser than the {target_mpp:g} µm/px the "
                        "model needs: the slide was scanned at too low a magnification")
    level = max(fine_enough, key=lambda i: (mpps[i], -i))
    scale = target_mpp / mpps[level]
    if abs(scale - 1) <= tolerance:
        scale = 1.0
    return ReadPlan(level, mpps[level], target_mpp, scale)


def reduce(pixels: np.ndarray, plan: ReadPlan, side: int) -> np.ndarray:
    """Brings ``[B, r, r, 3]`` (or ``[r, r, 3]``) pixels read by ``plan`` to ``side`` px, float32 in [0, 1]
    (the block mean when the scale is whole, as ``InputView.from_high`` does, else an area resize)."""
    x = np.asarray(pixels, np.float32) / np.float32(255.0)
    single = x.ndim == 3
    if single:
        x = x[None]
    k = plan.whole
    if k == 1 and x.shape[1] == side:
        out = x
    elif k and x.shape[1] == side * k:
        b = x.shape[0]
        out = x.reshape(b, side, k, side, k, 3).mean(axis=(2, 4), dtype=np.float32)
    else:
        import tensorflow as tf

        out = tf.image.resize(x, [side, side], method="area").numpy()
    return out[0] if single else out


__all__ = ["TOLERANCE", "ReadPlan", "choose_level", "reduce"]
