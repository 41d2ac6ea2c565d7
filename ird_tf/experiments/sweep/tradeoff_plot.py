"""Accuracy against FLOPs from a sweep's CSV with cost columns (the native trade-off study).

    python -m ird_tf.experiments.sweep.tradeoff_plot SWEEP.csv [--out PNG]

(e.g. ``experiments/results/sweep_native_tradeoff_cpu.csv``.)

One marker per model (method), one colour and line per magnification (the line joins that magnification's
models in order of FLOPs), the teacher as a star; x: FLOPs per image (log scale), y: test balanced
accuracy. Rows without a finished run are left out. Default output: the CSV's path with ``.png``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ird_tf.errors import DataError
from ird_tf.experiments.study.cli import csv_plot_command
from ird_tf.files import write_figure

REQUIRED = ("magnification", "method", "seeds_done", "balanced_accuracy_mean", "mflops_per_image")
MARKERS = "osD^vP<>Xph"


def read_tradeoff(csv_path: str | Path):
    """The CSV's finished rows (a DataFrame); a missing file or columns raise DataError naming the file."""
    import pandas as pd

    path = Path(csv_path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (run the sweep first)")
    df = pd.read_csv(path, comment="#")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"{path}: columns {missing} are missing (a sweep with cost columns writes them)")
    return df[(df["seeds_done"] > 0) & df["balanced_accuracy_mean"].notna()]


def plot_tradeoff(csv_path: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = read_tradeoff(csv_path)
    out = Path(out) if out else Path(csv_path).with_suffix(".png")
    methods = [m for m in dict.fromkeys(df["method"]) if m != "teacher"]
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(methods)}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for mag in sorted({float(m) for m in df.loc[df["method"] != "teacher", "magnification"]}, reverse=True):
        rows = df[(df["magnification"] == mag) & (df["method"] != "teacher")].sort_values("mflops_per_image")
        line = ax.plot(rows["mflops_per_image"], rows["balanced_accuracy_mean"], "-", alpha=0.4,
                       label=f"{mag:g}x")[0]
        for _, r in rows.iterrows():
            ax.plot(r["mflops_per_image"], r["balanced_accuracy_mean"], marker[r["method"]],
                    color=line.get_color(), markersize=7)
    teacher = df[df["method"] == "teacher"]
    if len(teacher):
        ax.plot(teacher["mflops_per_image"], teacher["balanced_accuracy_mean"], "*", color="black",
                markersize=13, label=f"teacher {teacher['magnification'].iloc[0]:g}x")
    for m in methods:
        ax.plot([], [], marker[m], color="grey", label=m)
    ax.set_xscale("log")
    ax.set_xlabel("MFLOPs per image (log scale)")
    ax.set_ylabel("test balanced accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    ax.set_title(f"accuracy against FLOPs ({Path(csv_path).name})")
    fig.tight_layout()
    write_figure(out, fig, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    return csv_plot_command("python -m ird_tf.experiments.sweep.tradeoff_plot", __doc__, plot_tradeoff, argv)


if __name__ == "__main__":
    sys.exit(main())
