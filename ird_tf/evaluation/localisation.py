"""How well attention maps land on the lesion: energy share inside the mask and the pointing game.

Neither paper measures this; the synthetic benchmark (and SICAPv2) ship per-pixel masks with values
0 benign, 3/4/5 Gleason grade and 255 other (unannotated), so only 3, 4 and 5 count as lesion.
Pure NumPy/PIL functions of one map and one mask (no TensorFlow), so they are cheap to test by hand.

Undefined scores are NaN and the means skip them: a mask without lesion (every NC patch) has no target
to point at, and a map with no positive energy has no share to give. The pointing game, however,
counts a flat map (no single maximum) as a miss so that a model whose maps vanish is not flattered.
A map of a single cell (a native-size student whose feature grid is 1x1) cannot place anything: both
scores are undefined for it, not a miss, so a table shows "n/a" instead of a pointing game of 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ird_tf.errors import DataError

LESION_VALUES = (3, 4, 5)
MASK_VALUES = (0, 3, 4, 5, 255)


def lesion(mask_hw: np.ndarray) -> np.ndarray:
    """Boolean lesion mask: Gleason values 3, 4, 5 (benign 0 and "other" 255 are not lesion)."""
    return np.isin(np.asarray(mask_hw), LESION_VALUES)


def _as_2d(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array [H, W], got shape {x.shape}")
    return x


def upsample_map(map_hw: np.ndarray, size: tuple[int, int] | int) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``size`` (H, W), float32.

    Alignment: half-pixel centres with edge clamping, the convention of ``tf.image.resize(...,
    "bilinear")`` (and PIL), so map cell (i, j) covers the same image area it was computed from; the
    two agree to float32 round-off when upsampling. (Downsampling, never needed for scoring, uses PIL's
    antialiased triangle filter.)
    """
    m = _as_2d("upsample_map: map", map_hw).astype(np.float32)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if m.shape == (height, width):
        return m.copy()
    return np.asarray(Image.fromarray(m).resize((width, height), Image.Resampling.BILINEAR), np.float32)


def _map_on_mask(map_hw: np.ndarray, mask_hw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = _as_2d("mask", mask_hw)
    m = upsample_map(map_hw, mask.shape)
    if not np.all(np.isfinite(m)):
        raise DataError("attention map has NaN or infinite values")
    return m, lesion(mask)


def energy_inside(map_hw: np.ndarray, mask_hw: np.ndarray) -> float:
    """Share of positive attention energy inside the lesion: sum(max(m, 0) * inside) / sum(max(m, 0)).

    ``m`` is the map bilinearly upsampled to the mask size. 1.0: all attention on the lesion; the
    lesion's area fraction: attention spread uniformly. NaN when the mask has no lesion or the map no
    positive energy (callers skip NaN).
    """
    m, inside = _map_on_mask(map_hw, mask_hw)
    energy = np.maximum(m.astype(np.float64), 0.0)
    total = energy.sum()
    if not inside.any() or total <= 0:
        return float("nan")
    return float(energy[inside].sum() / total)


def pointing_game(map_hw: np.ndarray, mask_hw: np.ndarray, tolerance_px: float = 0) -> float:
    """1.0 if the maximum of the upsampled map lies on the lesion or within ``tolerance_px`` (Euclidean,
    mask pixels) of it, else 0.0; NaN when the mask has no lesion.

    Zhang et al. (2016) use 15 px at 224 px; scale it with the mask size. Ties go to the first maximum in
    row-major order; a constant map points nowhere and is a miss.
    """
    m, inside = _map_on_mask(map_hw, mask_hw)
    if tolerance_px < 0:
        raise ValueError(f"pointing_game: tolerance_px={tolerance_px!r}; expected a number >= 0")
    if not inside.any():
        return float("nan")
    if m.max() == m.min():
        return 0.0
    r, c = np.unravel_index(int(np.argmax(m)), m.shape)
    if inside[r, c]:
        return 1.0
    if tolerance_px == 0:
        return 0.0
    rows, cols = np.nonzero(inside)
    nearest = np.sqrt(np.min((rows - r) ** 2 + (cols - c) ** 2))
    return float(nearest <= tolerance_px)


def localisation_scores(
    maps: np.ndarray, masks: np.ndarray, *, tolerance_px: float = 0
) -> dict[str, float | int]:
    """Mean energy share and pointing-game accuracy over patches, NaN-skipping.

    ``maps`` float [N, h, w]: one map per patch, for the class of interest (usually the true class:
    ``attention_maps(model, x, classes=labels)`` then ``[..., 0]``); ``masks`` [N, H, W] with SICAPv2
    values. Returns ``energy_inside``, ``pointing_game`` (NaN if nothing was scored, or if the maps are
    1x1), ``n`` (patches with
    a lesion, the ones scored by the pointing game) and ``n_zero_energy`` (of those, maps with no positive
    energy, left out of the energy mean).
    """
    maps, masks = np.asarray(maps), np.asarray(masks)
    if maps.ndim != 3 or masks.ndim != 3 or len(maps) != len(masks):
        raise DataError(
            f"localisation_scores: expected maps [N, h, w] and masks [N, H, W] with the same N, got "
            f"{maps.shape} and {masks.shape} (select one class channel of [N, h, w, K] maps first)"
        )
    if maps.shape[1] * maps.shape[2] == 1:  # one cell: every pixel gets the same weight
        n = int(sum(lesion(k).any() for k in masks))
        return {"energy_inside": float("nan"), "pointing_game": float("nan"), "n": n, "n_zero_energy": 0}
    pairs = list(zip(maps, masks, strict=True))
    energy = np.array([energy_inside(m, k) for m, k in pairs], np.float64)
    points = np.array([pointing_game(m, k, tolerance_px) for m, k in pairs], np.float64)
    scored = ~np.isnan(points)
    n_energy = int(np.sum(~np.isnan(energy)))
    return {
        "energy_inside": float(np.nanmean(energy)) if n_energy else float("nan"),
        "pointing_game": float(np.mean(points[scored])) if scored.any() else float("nan"),
        "n": int(scored.sum()),
        "n_zero_energy": int(scored.sum()) - n_energy,
    }


def load_masks(
    paths: Sequence[str | Path], size: tuple[int, int] | int, *, check_values: bool = True
) -> np.ndarray:
    """Reads mask PNGs into uint8 [N, H, W], resized with nearest neighbour to ``size`` (the model's
    input size) so no in-between values appear.

    Grey PNGs or RGB ones with equal channels are accepted. ``check_values`` rejects values other
    than 0/3/4/5/255, which would mean the mask was resampled or is not a SICAPv2-style mask.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    out = np.zeros((len(paths), height, width), np.uint8)
    for i, p in enumerate(paths):
        if p is None or (isinstance(p, float) and np.isnan(p)):
            raise DataError(f"load_masks: row {i} has no mask path (filter the table on its 'mask' column)")
        try:
            with Image.open(p) as img:
                img = img.convert("RGB") if img.mode == "P" else img
                arr = np.asarray(img)
        except (OSError, ValueError) as exc:
            raise DataError(f"load_masks: cannot read mask {p}: {exc}") from exc
        if arr.ndim == 3:
            if arr.shape[2] >= 3 and not (np.array_equal(arr[..., 0], arr[..., 1])
                                          and np.array_equal(arr[..., 0], arr[..., 2])):
                raise DataError(f"load_masks: mask {p} is colour; expected one grey channel of class values")
            arr = arr[..., 0]
        if check_values and not np.isin(arr, MASK_VALUES).all():
            bad = sorted(set(np.unique(arr).tolist()) - set(MASK_VALUES))[:8]
            raise DataError(f"load_masks: mask {p} has values {bad}; expected only {list(MASK_VALUES)}")
        arr = arr.astype(np.uint8)
        if arr.shape != (height, width):
            arr = np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.NEAREST))
        out[i] = arr
    return out


__all__ = [
    "LESION_VALUES", "MASK_VALUES", "lesion", "upsample_map", "energy_inside", "pointing_game",
    "localisation_scores", "load_masks",
]
