"""The outputs of the label-free study: one row per teacher, reference and (method, unlabeled set),
mean ± std over the finished seeds with each row's epochs and steps, written as Markdown and CSV, and
the accuracy and kappa curves against the unlabeled-set size drawn from that CSV. Kept apart from the
runner because the outputs are rebuilt from the run directories alone, without training anything.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.experiments import study
from ird_tf.experiments.label_free.config import LabelFreeConfig
from ird_tf.experiments.label_free.plan import Planned
from ird_tf.experiments.label_free.sets import budget_steps
from ird_tf.experiments.sweep.config import default_methods, describe
from ird_tf.files import write_figure
from ird_tf.runs import read_result

METRICS = (("balanced_accuracy", "test bal. acc."), ("kappa", "test kappa"))


def collect(base: ExperimentConfig, settings: LabelFreeConfig, planned: list[Planned], n_train: int
            ) -> list[dict]:
    """One record per row: teacher, then per magnification the references and method x ratio."""
    from ird_tf.evaluation.metrics import summarize_seeds

    batch = base.data.batch_size
    groups: dict[tuple, list[Planned]] = {}
    for p in planned:
        key = (p.mag, p.method, None if p.uset is None else p.uset.ratio)
        groups.setdefault(key, []).append(p)
    order = sorted(groups, key=lambda k: (k[0] != base.data.teacher_mag, -k[0]))  # stable: plan order kept
    records = []
    for key in order:
        runs = groups[key]
        first = runs[0]
        per_seed, by_seed, dirs, seconds = [], {}, [], 0.0
        for p in runs:
            result = read_result(p.run_dir)
            if result is not None:
                per_seed.append(result.metrics.get("test", {}))
                by_seed[p.seed] = result.metrics.get("test", {})
                dirs.append(p.run_dir.name)
                seconds += result.seconds
        epochs = first.cfg.optim.teacher_epochs if first.kind == "teacher" else first.cfg.optim.epochs
        n_images = first.uset.size if first.uset else n_train
        records.append({
            "magnification": first.mag, "method": first.method, "group": first.group,
            "extra_ratio": None if first.uset is None else first.uset.ratio,
            "unlabeled_images": first.uset.size if first.uset else None,
            "extra_images": first.uset.n_extra if first.uset else None,
            "epochs": epochs, "train_steps": epochs * math.ceil(n_images / batch),
            "seeds_done": len(per_seed), "seeds_planned": len(runs),
            "summary": summarize_seeds(per_seed) if per_seed else {}, "by_seed": by_seed, "runs": dirs,
            "seconds": seconds,
        })
    return records


def paired(records: list[dict]) -> tuple[str, dict]:
    """Each label-free row (``method +ratio``) and labeled reference compared seed by seed with the
    labeled ``alone`` and ``fm`` students of its magnification (``study.paired_section``)."""
    teacher = next((r["by_seed"] for r in records if r["group"] == "teacher"), None)
    groups: dict[float, dict] = {}
    for r in records:
        if r["group"] == "teacher":
            continue
        name = r["method"] if r["group"] == "reference" else f"{r['method']} +{r['extra_ratio']:g}x"
        groups.setdefault(r["magnification"], {})[name] = r["by_seed"]
    return study.paired_section([(f"{mag:g}x", per, teacher) for mag, per in groups.items()], what="row")


def write_outputs(base: ExperimentConfig, settings: LabelFreeConfig, planned: list[Planned], n_train: int,
                  results_dir: Path, out_name: str, header: dict, *, figures: bool = True
                  ) -> tuple[Path, Path, Path | None]:
    """``<out_name>.md``, ``.csv`` and ``.png`` under ``results_dir`` (each atomically replaced), and
    ``<out_name>_paired.png`` (paired differences against the labeled ``alone`` and ``fm``) when one of
    them is a reference with a finished pair; the figures only when ``figures`` is set."""
    from ird_tf.evaluation.metrics import format_table

    records = collect(base, settings, planned, n_train)
    recorded = sum(r["seconds"] for r in records)
    finished = sum(r["seeds_done"] for r in records)
    d, o = base.data, base.optim
    budget = budget_steps(base, n_train)
    refs = {r: default_methods()[r] for r in settings.references}
    lines = [
        f"# Label-free distillation `{settings.name}`: test balanced accuracy and quadratic kappa against "
        "the unlabeled-set size, mean ± std over seeds",
        "",
        *study.common_lines(header, finished=finished, planned=len(planned), recorded_seconds=recorded),
        f"- Settings: {d.source} data (fold {d.fold}), {base.model.backbone}, {d.image_size} px at "
        f"{d.teacher_mag:g}x, student input {settings.mode}, batch {d.batch_size}, {o.name} lr "
        f"{o.learning_rate:g}, seeds {list(settings.seeds)}; teacher {o.teacher_epochs} epochs",
        f"- Unlabeled set of ratio r: the fold's {n_train} training images without their labels + the first "
        f"r x {n_train} images of an extra synthetic pool (benchmark settings, seed {settings.pool_seed}: "
        "new patients, none of the test split); nested sets; labels never used in training, best epoch "
        "chosen on the labeled validation split as for every run",
        "- Fixed step budget: each label-free run trains the whole number of epochs whose steps come "
        f"closest to the labeled runs' {o.epochs} epochs x {math.ceil(n_train / d.batch_size)} steps = "
        f"{budget} steps (columns epochs, steps)",
        "- Label-free methods: " + "; ".join(f"`{n}` = {describe(settings.method(n), base.loss)}"
                                             for n in settings.methods),
        "- Labeled references (the sweep's runs): " + "; ".join(f"`{n}` = {describe(m, base.loss)}"
                                                               for n, m in refs.items()),
    ]
    if header.get("failed"):
        lines.append("- FAILED runs: " + "; ".join(header["failed"]))
    columns = ["magnification", "method", "training data", "epochs", "steps", "seeds",
               *(label for _, label in METRICS)]
    rows = []
    for r in records:
        data = (f"{r['unlabeled_images']} unlabeled (+{r['extra_ratio']:g}x extra)"
                if r["group"] == "label_free" else f"{n_train} labeled")
        row = {"magnification": f"{r['magnification']:g}x", "method": r["method"], "training data": data,
               "epochs": r["epochs"], "steps": r["train_steps"],
               "seeds": f"{r['seeds_done']}/{r['seeds_planned']}"}
        for k, label in METRICS:
            row[label] = r["summary"].get(k)
        rows.append(row)
    md = "\n".join(lines) + "\n\n" + format_table(rows, columns, digits=3) + "\n"
    md = study.add_paired(md, paired(records), results_dir / f"{out_name}_paired.png" if figures else None,
                          f"Label-free distillation `{settings.name}`: paired differences per magnification")

    buf = io.StringIO()
    buf.write(study.csv_preamble(header, recorded_seconds=recorded, labeled_train_images=n_train,
                                 step_budget=budget))
    csv_cols = ["magnification", "method", "group", "extra_ratio", "unlabeled_images", "extra_images",
                "epochs", "train_steps", "seeds_done", "seeds_planned"]
    csv_cols += [f"{k}_{stat}" for k, _ in METRICS for stat in ("mean", "std")] + ["runs"]
    writer = csv.DictWriter(buf, fieldnames=csv_cols, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = {c: ("" if r.get(c) is None else r[c]) for c in csv_cols[:10]}
        row["runs"] = ";".join(r["runs"])
        for k, _ in METRICS:
            for stat in ("mean", "std"):
                row[f"{k}_{stat}"] = study.stat_cell(r["summary"].get(k), stat)
        writer.writerow(row)

    md_path, csv_path = study.write_outputs(results_dir, out_name, {".md": md, ".csv": buf.getvalue()})
    png_path = None
    if figures:
        png_path = plot_curves(csv_path, results_dir / f"{out_name}.png",
                               title=f"Label-free distillation `{settings.name}` (fixed step budget)")
    return md_path, csv_path, png_path


def plot_curves(csv_path: Path, png_path: Path, title: str = "") -> Path:
    """Accuracy (top) and kappa (bottom) against the unlabeled-set size, one column per magnification,
    one line per label-free method (error bars: std when > 1 seed), the teacher and the labeled
    references as horizontal lines. Reads the CSV this module writes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(csv_path, comment="#")
    mags = sorted({m for m in df.loc[df["group"] != "teacher", "magnification"]}, reverse=True)
    fig, axes = plt.subplots(2, len(mags), figsize=(5.2 * len(mags), 7.5), squeeze=False)
    styles = iter(("--", ":", "-.", (0, (5, 1)), (0, (1, 3))))
    ref_style = {"teacher": ("black", "--")}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name in df.loc[df["group"] == "reference", "method"].unique():
        ref_style[name] = ("grey", next(styles))
    teacher = df[df["group"] == "teacher"]
    for col, mag in enumerate(mags):
        at_mag = df[df["magnification"] == mag]
        for row, (key, label) in enumerate(METRICS):
            ax = axes[row, col]
            lf = at_mag[at_mag["group"] == "label_free"]
            for i, (name, g) in enumerate(lf.groupby("method", sort=False)):
                g = g.sort_values("unlabeled_images")
                yerr = g[f"{key}_std"].where(g["seeds_done"] > 1)
                ax.errorbar(g["unlabeled_images"], g[f"{key}_mean"], yerr=yerr, marker="o", capsize=3,
                            color=colors[i % len(colors)], label=f"{name} (label-free)")
            refs = ([(f"teacher {teacher['magnification'].iloc[0]:g}x", "teacher", teacher)]
                    if len(teacher) else [])
            refs += [(f"{n} (labeled)", n, g) for n, g in at_mag[at_mag["group"] == "reference"].groupby(
                "method", sort=False)]
            for text, name, g in refs:
                value = g[f"{key}_mean"].iloc[0]
                if pd.notna(value):
                    color, style = ref_style[name]
                    ax.axhline(value, color=color, linestyle=style, linewidth=1.2, label=text)
            sizes = sorted(lf["unlabeled_images"].dropna().unique())
            ax.set_xticks(sizes)
            ratios = lf.drop_duplicates("unlabeled_images").set_index("unlabeled_images")["extra_ratio"]
            ax.set_xticklabels([f"{int(s)}\n(+{ratios[s]:g}x)" for s in sizes])
            ax.set_title(f"student at {mag:g}x")
            ax.set_xlabel("unlabeled training images (train + extra)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, min(len(labels), 2 * len(mags))),
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    write_figure(png_path, fig, dpi=110)
    plt.close(fig)
    return png_path
