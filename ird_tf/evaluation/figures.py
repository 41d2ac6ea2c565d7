"""Figures of the result tables and attention maps, as PNG files.

Functions take NumPy arrays / DataFrames and return the written path. They draw on a bare
``matplotlib.figure.Figure`` (Agg canvas), never pyplot, so they change no global backend or state and
work in headless runs and threads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ird_tf.errors import DataError
from ird_tf.evaluation.localisation import upsample_map
from ird_tf.files import write_figure

CORRECT_COLOUR = "#1a9641"  # green: the model's top class is the true class
WRONG_COLOUR = "#d7191c"  # red: it is not


def _new_figure(width_in: float, height_in: float, dpi: int) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _image01(image: np.ndarray, name: str = "image") -> np.ndarray:
    """RGB (or grey) image as float [H, W, 3] in [0, 1]: uint8 is divided by 255, floats are clipped."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise DataError(f"{name}: expected an RGB image [H, W, 3], got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def overlay(image_hw3: np.ndarray, map_hw: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """The map, upsampled to the image (bilinear) and min-max normalised for display, blended over it.

    ``image_hw3``: uint8 or float in [0, 1]. A constant map shows as the colour map's lowest colour
    rather than NaN. Returns uint8 [H, W, 3]: (1 - alpha) * image + alpha * cmap(map).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha={alpha!r}; expected a number in [0, 1]")
    image = _image01(image_hw3)
    m = upsample_map(map_hw, image.shape[:2]).astype(np.float64)
    if not np.all(np.isfinite(m)):
        raise DataError("overlay: the attention map has NaN or infinite values")
    span = m.max() - m.min()
    m = (m - m.min()) / span if span > 0 else np.zeros_like(m)
    colours = matplotlib.colormaps[cmap](m)[..., :3]
    return np.round(255.0 * ((1.0 - alpha) * image + alpha * colours)).astype(np.uint8)


def prediction_colour(probs: Sequence[float], label: int) -> str:
    """Green if the top class of ``probs`` is ``label``, red otherwise (the paper's Figure 3 colouring)."""
    return CORRECT_COLOUR if int(np.argmax(probs)) == int(label) else WRONG_COLOUR


def _panel(ax, image: np.ndarray) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def attention_figure(
    path: str | Path,
    rows: Sequence[Mapping],
    columns: Sequence[str],
    class_names: Sequence[str],
    *,
    inputs: Mapping[str, str] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    panel_inches: float = 1.6,
    dpi: int = 100,
) -> Path:
    """A grid like Figure 3 of del Amor et al. (2023): one row per test patch.

    Each row is a dict::

        {"label": 2,                                         # true class index into class_names
         "images": {"10x": rgb, "2.5x": rgb},                 # what each model saw, uint8 or [0, 1]
         "maps": {"no KD": m, "FM+AT+": m, "teacher": m},     # 2-D map [h, w], e.g. of the true class
         "probs": {"no KD": p, "FM+AT+": p, "teacher": p},    # softmax vector [C] of each model
         "title": "P03-S1_0007"}                              # optional, printed in the row label

    ``columns`` orders the panels; a name in ``row["images"]`` draws that image, a name in
    ``row["maps"]`` draws the model's attention over its input image (``inputs[name]``, an images key;
    by default the row's first image) with "p(true class)" below it, green if the model's top class is
    right and red if wrong. The row label on the left is the true class. Every row needs every column.
    """
    rows, columns = list(rows), list(columns)
    if not rows or not columns:
        raise ValueError("attention_figure: needs at least one row and one column")
    inputs = dict(inputs or {})
    n_cls = len(class_names)
    fig = _new_figure(panel_inches * len(columns), (panel_inches + 0.3) * len(rows) + 0.3, dpi)
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, row in enumerate(rows):
        label = int(row["label"])
        if not 0 <= label < n_cls:
            raise DataError(f"attention_figure: row {r} label={label}; "
                            f"expected 0..{n_cls - 1} ({list(class_names)})")
        images, maps, probs = row.get("images", {}), row.get("maps", {}), row.get("probs", {})
        if not images:
            raise DataError(f"attention_figure: row {r} has no 'images'")
        for c, name in enumerate(columns):
            ax = axes[r, c]
            if name in images:
                _panel(ax, _image01(images[name], f"row {r} image {name!r}"))
            elif name in maps:
                source = inputs.get(name, next(iter(images)))
                if source not in images:
                    raise DataError(f"attention_figure: inputs[{name!r}]={source!r} is not an image of "
                                    f"row {r} (has {list(images)})")
                p = np.asarray(probs.get(name, ()), np.float64).reshape(-1)
                if p.shape != (n_cls,):
                    raise DataError(f"attention_figure: row {r} probs[{name!r}] has shape {p.shape}; "
                                    f"expected ({n_cls},) for {list(class_names)}")
                _panel(ax, overlay(images[source], maps[name], alpha, cmap))
                ax.set_xlabel(f"p({class_names[label]}) = {p[label]:.2f}", color=prediction_colour(p, label),
                              fontsize=9, fontweight="bold")
            else:
                raise DataError(f"attention_figure: column {name!r} is neither an image ({list(images)}) "
                                f"nor a model map ({list(maps)}) of row {r}")
            if r == 0:
                ax.set_title(name, fontsize=10)
        title = row.get("title")
        axes[r, 0].set_ylabel(class_names[label] + (f"\n{title}" if title else ""), fontsize=9)
    return write_figure(path, fig)


def _positions(x: Sequence) -> tuple[np.ndarray, list[str] | None]:
    """Numbers are plotted where they are; strings at 0, 1, 2, ... with themselves as tick labels."""
    if all(isinstance(v, int | float | np.number) for v in x):
        return np.asarray(x, np.float64), None
    return np.arange(len(x), dtype=np.float64), [str(v) for v in x]


def curve_plot(
    path: str | Path,
    x: Sequence,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str = "",
    *,
    logx: bool = False,
    size_inches: tuple[float, float] = (5.0, 3.5),
    dpi: int = 100,
) -> Path:
    """Lines of mean ± std (error bars) against ``x``: accuracy vs unlabeled-set size or magnification.

    ``series`` maps a name to (means, stds), each as long as ``x``; a NaN std (one seed) draws no bar,
    a NaN mean leaves a gap. ``logx`` uses a log-2 axis (magnifications, set-size multiples) with
    ``x`` as tick labels.
    """
    pos, ticks = _positions(list(x))
    fig = _new_figure(*size_inches, dpi)
    ax = fig.add_subplot()
    for name, (mean, std) in series.items():
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        if mean.shape != pos.shape or std.shape != pos.shape:
            raise ValueError(f"curve_plot: series {name!r} has {mean.size} means and {std.size} stds; "
                             f"expected {pos.size} (one per x)")
        ax.errorbar(pos, mean, yerr=std, marker="o", capsize=3, label=name)
    if logx:
        if ticks is not None or np.any(pos <= 0):
            raise ValueError("curve_plot: logx needs x values > 0")
        ax.set_xscale("log", base=2)
        ticks = [f"{v:g}" for v in pos]
    if ticks is not None:
        ax.set_xticks(pos, ticks)
        ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return write_figure(path, fig)


def bar_plot(
    path: str | Path,
    table: pd.DataFrame,
    *,
    group: str,
    hue: str,
    mean: str = "mean",
    std: str | None = "std",
    ylabel: str = "",
    title: str = "",
    size_inches: tuple[float, float] = (6.0, 3.5),
    dpi: int = 100,
) -> Path:
    """Grouped bars of mean ± std from a long table: one group per ``group`` value (e.g. normalisation),
    one bar per ``hue`` value (e.g. distance) inside it, in order of first appearance; missing
    combinations leave a gap. ``std=None`` (or NaN) draws no error bar.
    """
    needed = [group, hue, mean] + ([std] if std else [])
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"bar_plot: the table has no column(s) {missing}; it has {list(table.columns)}")
    if table.duplicated([group, hue]).any():
        raise ValueError(f"bar_plot: several rows share a ({group}, {hue}) pair; aggregate them first")
    groups, hues = list(pd.unique(table[group])), list(pd.unique(table[hue]))
    means = table.pivot(index=group, columns=hue, values=mean).reindex(index=groups, columns=hues)
    stds = (table.pivot(index=group, columns=hue, values=std).reindex(index=groups, columns=hues)
            if std else means * np.nan)
    fig = _new_figure(*size_inches, dpi)
    ax = fig.add_subplot()
    width = 0.8 / max(len(hues), 1)
    pos = np.arange(len(groups), dtype=np.float64)
    for i, h in enumerate(hues):
        ax.bar(pos + (i - (len(hues) - 1) / 2) * width, means[h].to_numpy(np.float64), width,
               yerr=stds[h].to_numpy(np.float64), capsize=3, label=str(h))
    ax.set_xticks(pos, [str(g) for g in groups])
    ax.set(xlabel=group, ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title=hue, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # never over a bar
    return write_figure(path, fig)


__all__ = [
    "CORRECT_COLOUR", "WRONG_COLOUR", "overlay", "prediction_colour", "attention_figure", "curve_plot",
    "bar_plot",
]
