"""What every study table states: the command, the commit, the run time, the progress; mean ± std
cells; outputs written atomically."""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path
from typing import Any

from ird_tf.files import write_text


def git_commit() -> str:
    """Short commit of the working directory's checkout (``+dirty`` when tracked files other than the
    result files differ from it), or "unknown" outside git."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=False)

    try:
        out = git("rev-parse", "--short", "HEAD")
        if out.returncode != 0 or not out.stdout.strip():
            return "unknown"
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!experiments/results")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def nan_if_none(x: Any) -> float:
    return float("nan") if x is None else float(x)


def stat_cell(summary: dict | None, stat: str) -> str:
    """One ``mean``/``std`` cell of a CSV: 6 significant digits, empty when undefined."""
    v = nan_if_none((summary or {}).get(stat))
    return "" if math.isnan(v) else f"{v:.6g}"


def common_lines(header: dict, *, finished: int, planned: int, recorded_seconds: float) -> list[str]:
    """The lines every study table starts with: command, commit, run time, progress."""
    elapsed = time.time() - header["start"]
    return [
        f"- Command: `{header['command']}`",
        f"- Commit: `{header['commit']}`",
        f"- Run time: {elapsed / 60:.1f} min in the last invocation ({header.get('trained', 0)} runs "
        f"trained, {header.get('reused', 0)} reused); {recorded_seconds / 60:.1f} min of training recorded "
        "by the finished runs",
        f"- Progress: {finished}/{planned} runs finished (updated {time.strftime('%Y-%m-%d %H:%M:%S')})",
        *time_lines(header, elapsed),
    ]


def time_split(header: dict, elapsed: float) -> dict[str, float] | None:
    """Seconds of this invocation by what they were spent on (``ird_tf.training.timing.breakdown`` of
    the runs it trained, plus ``outside``: everything but those runs' own time), or None when it trained
    none."""
    from ird_tf.training.timing import breakdown

    if not header.get("timings"):
        return None
    parts = breakdown(header["timings"])
    return {**parts, "outside": elapsed - parts["wall"], "invocation": elapsed}


def time_lines(header: dict, elapsed: float) -> list[str]:
    """Where the invocation's wall time went, against the compute of the train and eval steps."""
    t = time_split(header, elapsed)
    if t is None:
        return []

    def m(key: str) -> str:
        return f"{t[key] / 60:.1f} min"

    return [
        f"- Wall time against compute: this invocation {m('invocation')}; the train and eval steps of the "
        f"{len(header['timings'])} runs it trained, at their steady speed, {m('compute')} (wall / compute "
        f"= {t['invocation'] / max(t['compute'], 1e-9):.2f}). The rest: first calls (tracing) "
        f"{m('first_calls')}, epoch ends without validation (checkpoints, backup, TensorBoard) "
        f"{m('epoch_end')}, runs' setup (data, models, teacher, scoring files) {m('setup')}, outside the "
        f"runs (process start, input checks, reused runs, localisation, tables) "
        f"{m('outside')}",
    ]


def csv_preamble(header: dict, *, recorded_seconds: float, **extra: Any) -> str:
    """The ``# key: value`` lines a study CSV starts with: command, commit, run and training time."""
    elapsed = time.time() - header["start"]
    lines = [f"# command: {header['command']}", f"# commit: {header['commit']}",
             f"# run_time_min: {elapsed / 60:.2f}", f"# recorded_training_min: {recorded_seconds / 60:.2f}"]
    t = time_split(header, elapsed)
    if t is not None:
        parts = ("compute", "first_calls", "epoch_end", "setup", "outside")
        lines += [f"# {k}_min: {t[k] / 60:.2f}" for k in parts]
    lines += [f"# {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def paired_section(groups: list[tuple[str, dict[str, dict], dict | None]], *,
                   metric: str = "balanced_accuracy", label: str = "test bal. acc.",
                   references: tuple[str, ...] = ("alone", "fm"), what: str = "method") -> tuple[str, dict]:
    """The paired comparison of a study table: Markdown (a note and a table) and the plot's panels.

    ``groups``: per magnification (its label), ``{row name: {seed: test metrics}}`` and the teacher's
    ``{seed: test metrics}`` (or None). Each row is compared seed by seed with ``references`` (mean
    difference and its interval, ``ird_tf.evaluation.paired``) and, when ``alone`` and the teacher are
    there, the share of the alone→teacher gap it closes. Returns ("", {}) when no reference is present."""
    from ird_tf.evaluation.paired import INTERVAL, compare, paired_cell

    def scores(by_seed: dict) -> dict:
        return {seed: m.get(metric) for seed, m in by_seed.items()}

    rows, panels = [], {}
    refs_seen = [r for r in references if any(r in per for _, per, _ in groups)]
    if not refs_seen:
        return "", {}
    for mag, per, teacher in groups:
        table = compare({n: scores(v) for n, v in per.items()}, scores(teacher) if teacher else None,
                        references=tuple(refs_seen))
        panels[mag] = {}
        for name, r in table.items():
            seeds = max((p.n for p in (r[f"vs_{ref}"] for ref in refs_seen) if p is not None), default=0)
            if all(r[f"vs_{ref}"] is None for ref in refs_seen):
                continue
            panels[mag][name] = {ref: r[f"vs_{ref}"] for ref in refs_seen}
            gap = r["gap_closed"]
            cells = [mag, name, str(seeds), *(paired_cell(r[f"vs_{ref}"]) for ref in refs_seen),
                     "n/a" if gap is None else f"{gap:+.0%}"]
            rows.append("| " + " | ".join(cells) + " |")
    header = ["magnification", what, "paired seeds", *(f"{label} − {ref}" for ref in refs_seen),
              "alone→teacher gap closed"]
    lines = [
        f"### Paired differences of {label} against {' and '.join(f'`{r}`' for r in refs_seen)}",
        "",
        f"Seed by seed (same seed: same teacher, data order and initial weights): mean difference over the "
        f"seeds both finished and its {INTERVAL} (none with one seed); `*`: the interval excludes 0. "
        "Gap closed: mean(row − alone) / mean(teacher − alone) over the seeds all three finished.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *rows,
    ]
    return "\n".join(lines) + "\n", {k: v for k, v in panels.items() if v}


def add_paired(md: str, paired: tuple[str, dict], figure: Path | None, title: str) -> str:
    """A study table's Markdown followed by its paired section (:func:`paired_section`'s result), and
    the paired figure written to ``figure`` when there are panels (None: no figure, as in the tables a
    study rewrites after each run; drawing costs about a second)."""
    paired_md, panels = paired
    if paired_md:
        md += "\n" + paired_md
    if panels and figure is not None:
        from ird_tf.evaluation.paired import plot_paired

        plot_paired(figure, panels, title=title)
    return md


def write_outputs(results_dir: Path, out_name: str, texts: dict[str, str]) -> list[Path]:
    """``<results_dir>/<out_name><ext>`` for each ``ext -> text``, each replaced atomically."""
    return [write_text(results_dir / f"{out_name}{ext}", text) for ext, text in texts.items()]


__all__ = ["common_lines", "csv_preamble", "fmt_time", "git_commit", "nan_if_none", "paired_section",
           "stat_cell", "time_lines", "time_split", "write_outputs"]
