"""Paired comparisons of methods over seeds: the one place their statistics are computed. TF-free.

Two methods trained with the same seed share the teacher, the data order and the initial weights, so
their scores are compared seed by seed: the difference ``d_s = a_s - b_s`` over the seeds both finished,
its mean, and a 95 % paired-t interval ``mean ± t_{0.975, n-1} · sd(d) / sqrt(n)`` (the interval of
``scipy.stats.ttest_rel``). With one common seed there is a difference but no interval. The share of
the alone→teacher gap a method closes is ``mean(method - alone) / mean(teacher - alone)`` over the seeds
all three finished.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CONFIDENCE = 0.95
INTERVAL = "95 % paired-t interval over seeds"


@dataclass(frozen=True)
class Paired:
    """Mean paired difference over ``n`` common seeds and its interval (None with fewer than 2 seeds)."""

    n: int
    mean: float
    low: float | None = None
    high: float | None = None

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0 (False without an interval)."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def _common(a: Mapping, b: Mapping) -> list:
    return sorted(k for k in a if k in b and _finite(a[k]) and _finite(b[k]))


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def paired_difference(a: Mapping, b: Mapping, confidence: float = CONFIDENCE) -> Paired | None:
    """``a - b`` paired by key (seed) over the keys where both have a finite value; None when there is
    none. The interval is the paired-t one at ``confidence`` (two-sided)."""
    from scipy import stats

    keys = _common(a, b)
    if not keys:
        return None
    d = [float(a[k]) - float(b[k]) for k in keys]
    n = len(d)
    mean = sum(d) / n
    if n < 2:
        return Paired(n, mean)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Paired(n, mean, mean - half, mean + half)


def gap_closed(method: Mapping, alone: Mapping, teacher: Mapping) -> float | None:
    """The share of the alone→teacher gap ``method`` closes: ``mean(method - alone) / mean(teacher -
    alone)`` over the seeds all three finished; None without common seeds or with no gap (|gap| < 1e-9)."""
    keys = [k for k in _common(method, alone) if k in teacher and _finite(teacher[k])]
    if not keys:
        return None
    gain = sum(float(method[k]) - float(alone[k]) for k in keys) / len(keys)
    gap = sum(float(teacher[k]) - float(alone[k]) for k in keys) / len(keys)
    return None if abs(gap) < 1e-9 else gain / gap


def paired_cell(p: Paired | None, digits: int = 3) -> str:
    """``+0.031 [+0.005, +0.057] *`` (``*``: the interval excludes 0), ``+0.031 (1 seed)``, or ``n/a``."""
    if p is None:
        return "n/a"
    if p.low is None:
        return f"{p.mean:+.{digits}f} (1 seed)"
    mark = " *" if p.excludes_zero else ""
    return f"{p.mean:+.{digits}f} [{p.low:+.{digits}f}, {p.high:+.{digits}f}]{mark}"


def compare(per_seed: Mapping[str, Mapping], teacher: Mapping | None,
            references: Sequence[str] = ("alone", "fm")) -> dict[str, dict]:
    """For each method of ``per_seed`` (name -> {seed: score}): its paired difference against each of
    ``references`` present (never against itself) and the share of the alone→teacher gap it closes
    (when ``alone`` and ``teacher`` are given)."""
    out = {}
    for name, scores in per_seed.items():
        row = {f"vs_{ref}": (paired_difference(scores, per_seed[ref]) if ref in per_seed and ref != name
                             else None) for ref in references}
        row["gap_closed"] = (gap_closed(scores, per_seed["alone"], teacher)
                             if teacher and "alone" in per_seed and name != "alone" else None)
        out[name] = row
    return out


def plot_paired(path: str | Path, panels: Mapping[str, Mapping[str, Mapping[str, Paired | None]]],
                metric: str = "test balanced accuracy", title: str = "") -> Path:
    """One panel per magnification (``panels``: panel title -> method -> reference -> Paired): the mean
    paired difference of each method against each reference as a dot with its interval as a bar (no bar
    with one seed), a line at 0; filled dots where the interval excludes 0. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ird_tf.files import write_figure

    n = max(1, len(panels))
    fig = Figure(figsize=(3.6 * n, 3.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    refs = sorted({r for p in panels.values() for m in p.values() for r in m})
    colors = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for ax, (panel, methods) in zip(axes, panels.items(), strict=False):
        names = list(methods)
        labelled: set[str] = set()
        for j, ref in enumerate(refs):
            offset = (j - (len(refs) - 1) / 2) * 0.2
            for i, name in enumerate(names):
                p = methods[name].get(ref)
                if p is None:
                    continue
                x = i + offset
                if p.low is not None:
                    ax.plot([x, x], [p.low, p.high], color=colors[j % len(colors)], lw=1.5)
                ax.plot([x], [p.mean], "o", color=colors[j % len(colors)],
                        mfc=colors[j % len(colors)] if p.excludes_zero else "white",
                        label=None if ref in labelled else f"vs {ref}")
                labelled.add(ref)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(range(len(names)), names, rotation=30)
        ax.set_title(panel, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel(f"paired difference, {metric}")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        seen = dict(zip(labels, handles, strict=False))
        axes[-1].legend(seen.values(), seen.keys(), fontsize=7)
    if title:
        fig.suptitle(f"{title}\n({INTERVAL}; filled: interval excludes 0)", fontsize=9)
    write_figure(path, fig)
    return Path(path)


__all__ = ["CONFIDENCE", "INTERVAL", "Paired", "compare", "gap_closed", "paired_cell", "paired_difference",
           "plot_paired"]
