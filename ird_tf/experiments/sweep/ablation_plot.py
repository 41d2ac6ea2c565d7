"""Bar chart of the AT+ normalisation x distance ablation (the paper's Figure 2) from the sweep's CSV.

    python -m ird_tf.experiments.plot_ablation experiments/results/sweep_ablation_norm_cpu.csv [--out PNG]

Reads the CSV ``python -m ird_tf.experiments.sweep`` writes (lines starting with ``#`` are its header);
a method named ``<norm>_<distance>`` (``minmax_l2``, ``softmax_kl`` ...) is one bar: groups are the
normalisations, bars within a group the distances, one column of panels per magnification, test balanced
accuracy on top and quadratic kappa below; error bars are the std over seeds when more than one seed
finished. A ``teacher`` row is drawn as a dashed line. Default output: the CSV's path with ``.png``.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

from ird_tf.config import AT_DISTANCES, AT_NORMS
from ird_tf.errors import DataError
from ird_tf.experiments.study.cli import csv_plot_command
from ird_tf.files import write_figure

REQUIRED = ("magnification", "method", "seeds_done", "balanced_accuracy_mean", "balanced_accuracy_std",
            "kappa_mean", "kappa_std")
METRICS = (("balanced_accuracy", "test bal. acc."), ("kappa", "test kappa (quadratic)"))


def split_method(name: str) -> tuple[str, str] | None:
    """``"softmax_kl"`` -> ("softmax", "kl"); None for a name that is not ``<norm>_<distance>``."""
    norm, _, dist = str(name).rpartition("_")
    return (norm, dist) if norm in AT_NORMS and dist in AT_DISTANCES else None


def read_ablation(csv_path: str | Path):
    """The sweep CSV as a DataFrame with ``norm`` and ``distance`` columns (``None`` for other rows);
    a missing file, missing columns or no ``<norm>_<distance>`` method raise DataError naming the file."""
    import pandas as pd

    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected the CSV of python -m ird_tf.experiments.sweep)")
    try:
        df = pd.read_csv(path, comment="#")
    except (ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from e
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; expected the CSV of python -m "
                        f"ird_tf.experiments.sweep with columns {list(REQUIRED)}")
    parts = [split_method(m) for m in df["method"]]
    if not any(parts):
        raise DataError(f"{path}: no method named <norm>_<distance> (norm in {list(AT_NORMS)}, distance in "
                        f"{list(AT_DISTANCES)}); methods found: {sorted(set(map(str, df['method'])))}")
    df["norm"] = [p[0] if p else None for p in parts]
    df["distance"] = [p[1] if p else None for p in parts]
    return df


def grid(df, mag: float, key: str):
    """(norms, distances, mean [distance, norm], std [distance, norm]) of metric ``key`` at ``mag``;
    NaN where a cell is missing or unfinished, and std NaN unless more than one seed finished."""
    import numpy as np

    bars = df[df["norm"].notna()]
    norms = [n for n in AT_NORMS if n in set(bars["norm"])]
    dists = [d for d in AT_DISTANCES if d in set(bars["distance"])]
    mean = np.full((len(dists), len(norms)), np.nan)
    std = np.full_like(mean, np.nan)
    at_mag = bars[bars["magnification"] == mag]
    for (i, d), (j, n) in itertools.product(enumerate(dists), enumerate(norms)):
        cell = at_mag[(at_mag["norm"] == n) & (at_mag["distance"] == d)]
        if len(cell):
            mean[i, j] = cell[f"{key}_mean"].iloc[0]
            if cell["seeds_done"].iloc[0] > 1:
                std[i, j] = cell[f"{key}_std"].iloc[0]
    return norms, dists, mean, std


def plot_ablation(csv_path: str | Path, out: str | Path | None = None) -> Path:
    """Writes the grouped bar chart (see the module docstring) and returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    df = read_ablation(csv_path)
    out = Path(out) if out is not None else Path(csv_path).with_suffix(".png")
    bars = df[df["norm"].notna()]
    mags = sorted(bars["magnification"].unique(), reverse=True)
    teacher = df[df["method"] == "teacher"]
    fig, axes = plt.subplots(2, len(mags), figsize=(4.8 * len(mags), 7), squeeze=False)
    for col, mag in enumerate(mags):
        done = bars.loc[bars["magnification"] == mag, "seeds_done"]
        seeds = f"{done.min()} seed(s)" if done.min() == done.max() else f"{done.min()}-{done.max()} seeds"
        for row, (key, label) in enumerate(METRICS):
            ax = axes[row, col]
            norms, dists, mean, std = grid(df, mag, key)
            x = np.arange(len(norms))
            width = 0.8 / len(dists)
            for i, dist in enumerate(dists):
                pos = x - 0.4 + width * (i + 0.5)
                ax.bar(pos, mean[i], width, yerr=std[i], capsize=3, label=f"{dist} distance")
                for p, m in zip(pos, mean[i], strict=True):
                    if np.isnan(m):
                        ax.text(p, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
            if len(teacher) and not np.isnan(teacher[f"{key}_mean"].iloc[0]):
                ax.axhline(teacher[f"{key}_mean"].iloc[0], color="black", linestyle="--", linewidth=1,
                           label=f"teacher {teacher['magnification'].iloc[0]:g}x")
            ax.set_xticks(x, norms)
            ax.set_xlabel("attention map normalisation")
            ax.set_ylabel(label)
            ax.set_title(f"student at {mag:g}x ({seeds} per bar)")
            ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.suptitle(f"AT+ normalisation x distance ({Path(csv_path).name})")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    write_figure(out, fig, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return csv_plot_command("python -m ird_tf.experiments.plot_ablation", __doc__, plot_ablation, argv)


if __name__ == "__main__":
    sys.exit(main())
