"""The tables of a resolution sweep: one row per (magnification, method) plus the teacher, mean ± std
over the finished seeds, with localisation and cost columns when measured, written as Markdown and CSV.
Kept apart from the runner because the tables are rebuilt from the run directories alone, after every
run and by tests, without training anything.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.data.view import InputView
from ird_tf.experiments import study
from ird_tf.experiments.sweep.config import SweepConfig, describe, localisation_key
from ird_tf.experiments.sweep.plan import Planned
from ird_tf.runs import read_result


def _row_runs(planned: list[Planned], method: str, mag: float) -> list[Planned]:
    return [p for p in planned if p.method == method and p.mag == mag]


def collect(base: ExperimentConfig, sweep: SweepConfig, planned: list[Planned],
            costs: dict[tuple, dict] | None) -> list[dict]:
    """One record per table row (teacher, then magnification x method) from the run directories."""
    from ird_tf.evaluation.attention_eval import read_localisation
    from ird_tf.evaluation.metrics import summarize_seeds

    groups = [("teacher", float(base.data.teacher_mag))]
    groups += [(m, float(mag)) for mag in sweep.magnifications for m in sweep.methods]
    key = localisation_key(sweep)
    records = []
    for method, mag in groups:
        runs = _row_runs(planned, method, mag)
        per_seed, by_seed, dirs, seconds = [], {}, [], 0.0
        for p in runs:
            result = read_result(p.run_dir)
            if result is None:
                continue
            scores = dict(result.metrics.get("test", {}))
            loc = read_localisation(p.run_dir, key)
            if loc is not None:
                scores.update(energy_inside=loc["energy_inside"], pointing_game=loc["pointing_game"])
            per_seed.append(scores)
            by_seed[p.seed] = scores
            dirs.append(p.run_dir.name)
            seconds += result.seconds
        summary = summarize_seeds(per_seed) if per_seed else {}
        kind = "teacher" if method == "teacher" else sweep.methods[method].kind
        view = InputView.of(runs[0].cfg.data, kind)
        size = view.size
        backbone = runs[0].cfg.model.backbone if view.is_teacher else runs[0].cfg.model.student
        optim = runs[0].cfg.optim
        rec = {"magnification": mag, "method": method, "kind": kind, "input_px": size,
               "epochs": optim.teacher_epochs if view.is_teacher else optim.epochs,
               "mode": "upsampled" if kind == "teacher" else runs[0].cfg.data.mode, "backbone": backbone,
               "seeds_done": len(per_seed), "seeds_planned": len(runs), "summary": summary,
               "by_seed": by_seed, "runs": dirs, "seconds": seconds}
        if costs is not None:
            rec.update(costs[(size, backbone)])
        records.append(rec)
    return records


def tuned_choices(base: ExperimentConfig, sweep: SweepConfig, planned: list[Planned]) -> list[str]:
    """``2.5x tuned seed 22: 0.1 FM + 1 AT+`` for every tuned run whose choice is recorded."""
    from ird_tf.experiments.sweep.config import run_config
    from ird_tf.experiments.sweep.plan import tuning_folder
    from ird_tf.runs.tuning import read_record

    out = []
    for p in planned:
        if p.kind != "tuned":
            continue
        folder = tuning_folder(run_config(base, sweep, p.mag, p.method, p.seed), sweep.methods[p.method])
        if (folder / "tuning.json").is_file():
            out.append(f"{p.label()}: {read_record(folder, option=str(folder))['choice']['label']}")
    return out


_METRICS = (("balanced_accuracy", "test bal. acc."), ("kappa", "test kappa"),
            ("energy_inside", "energy in lesion"), ("pointing_game", "pointing game"))


def paired(records: list[dict]) -> tuple[str, dict]:
    """The paired comparison against ``alone`` and ``fm`` per magnification (``study.paired_section``)."""
    teacher = next((r["by_seed"] for r in records if r["kind"] == "teacher"), None)
    groups: dict[float, dict] = {}
    for r in records:
        if r["kind"] != "teacher":
            groups.setdefault(r["magnification"], {})[r["method"]] = r["by_seed"]
    return study.paired_section([(f"{mag:g}x", per, teacher) for mag, per in groups.items()])


def write_tables(base: ExperimentConfig, sweep: SweepConfig, planned: list[Planned], results_dir: Path,
                 out_name: str, header: dict, costs: dict[tuple, dict] | None, *, figures: bool = True
                 ) -> tuple[Path, Path]:
    """``<results_dir>/<out_name>.md`` and ``.csv`` from the finished runs (atomically replaced), and
    ``<out_name>_paired.png`` (paired differences against ``alone`` and ``fm``) when the sweep has one of
    them and a finished pair and ``figures`` is set."""
    from ird_tf.evaluation.metrics import format_table

    records = collect(base, sweep, planned, costs)
    localised = bool(sweep.localised)
    metric_keys = _METRICS if localised else _METRICS[:2]
    finished = sum(r["seeds_done"] for r in records)
    recorded = sum(r["seconds"] for r in records)
    d, o = base.data, base.optim
    lines = [
        f"# Sweep `{out_name.removeprefix('sweep_')}`: test balanced accuracy and quadratic kappa, "
        "mean ± std over seeds",
        "",
        *study.common_lines(header, finished=finished, planned=len(planned), recorded_seconds=recorded),
        f"- Settings: {d.source} data (fold {d.fold}), {base.model.backbone}, {d.image_size} px at "
        f"{d.teacher_mag:g}x, student input {sweep.mode}, {o.epochs} epochs (teacher {o.teacher_epochs}), "
        f"batch {d.batch_size}, {o.name} lr {o.learning_rate:g}, seeds {list(sweep.seeds)}",
        "- Methods: " + "; ".join(f"`{n}` = {describe(m, base.loss)}" for n, m in sweep.methods.items()),
    ]
    mixed = any(m.mode is not None or m.student_backbone is not None for m in sweep.methods.values())
    # methods trained for different numbers of epochs: each row says its own, and with costs its training
    # cost in epochs x FLOPs (every run trains on as many images per epoch)
    by_epochs = any(m.epochs is not None for m in sweep.methods.values())
    if localised:
        lines.append(f"- Localisation (test split, patches with a lesion): share of the true class's "
                     f"{sweep.localisation_weighting} attention energy inside the lesion mask, and "
                     f"pointing-game accuracy; for the teacher and {list(sweep.localised)}")
    if costs is not None:
        lines.append("- Cost: inference images/s (batch 32, compiled call, this machine, measured in the "
                     "sweep process) and FLOPs per image (2 x multiply-adds of the Conv/Dense layers)"
                     + ("; images/s b1: the same at batch 1; params: parameters" if mixed else "")
                     + ("; epochs x MFLOPs: training epochs times MFLOPs per image, proportional to the "
                        "training compute (every run sees as many images per epoch)" if by_epochs else ""))
    choices = tuned_choices(base, sweep, planned)
    if choices:
        lines.append("- Weights chosen on the validation split (tuned methods; records under "
                     f"{Path(base.run.output_dir) / 'tuning'}): " + "; ".join(choices))
    if header.get("failed"):
        lines.append("- FAILED runs: " + "; ".join(header["failed"]))
    # studies whose methods differ in mode or backbone get those columns, batch-1 images/s and parameters
    columns = ["magnification", "method", "seeds", *(label for _, label in metric_keys)]
    if costs is not None:
        columns += ["input px", "images/s", "MFLOPs/image"]
        if mixed:
            columns[2:2] = ["mode", "backbone"]
            columns += ["images/s b1", "params"]
    if by_epochs:
        columns += ["epochs", "epochs x MFLOPs"] if costs is not None else ["epochs"]
    rows = []
    for r in records:
        row = {"magnification": f"{r['magnification']:g}x", "method": r["method"],
               "seeds": f"{r['seeds_done']}/{r['seeds_planned']}", "input px": r["input_px"],
               "mode": r["mode"], "backbone": r["backbone"], "epochs": r["epochs"]}
        for k, label in metric_keys:
            row[label] = r["summary"].get(k)
        if costs is not None:
            row["images/s"] = f"{r['images_per_s']:.0f}"
            row["MFLOPs/image"] = f"{r['mflops']:.3g}"
            row["images/s b1"] = f"{r['images_per_s_b1']:.0f}"
            row["params"] = r["params"]
            row["epochs x MFLOPs"] = f"{r['epochs'] * r['mflops']:.3g}"
        rows.append(row)
    md = "\n".join(lines) + "\n\n" + format_table(rows, columns, digits=3) + "\n"
    md = study.add_paired(md, paired(records), results_dir / f"{out_name}_paired.png" if figures else None,
                          f"Sweep `{out_name.removeprefix('sweep_')}`: paired differences per magnification")

    buf = io.StringIO()
    buf.write(study.csv_preamble(header, recorded_seconds=recorded))
    csv_cols = ["magnification", "method", "kind", "mode", "input_px", "seeds_done", "seeds_planned"]
    for k, _ in metric_keys:
        csv_cols += [f"{k}_mean", f"{k}_std"]
    if costs is not None:
        csv_cols += ["images_per_s", "mflops_per_image"]
        if mixed:
            csv_cols += ["backbone", "images_per_s_b1", "params"]
    if by_epochs:
        csv_cols.append("epochs")
    csv_cols.append("runs")
    writer = csv.DictWriter(buf, fieldnames=csv_cols, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row = {"magnification": r["magnification"], "method": r["method"], "kind": r["kind"],
               "mode": r["mode"], "input_px": r["input_px"],
               "seeds_done": r["seeds_done"], "seeds_planned": r["seeds_planned"],
               "runs": ";".join(r["runs"])}
        if by_epochs:
            row["epochs"] = r["epochs"]
        for k, _ in metric_keys:
            for stat in ("mean", "std"):
                row[f"{k}_{stat}"] = study.stat_cell(r["summary"].get(k), stat)
        if costs is not None:
            row.update(images_per_s=f"{r['images_per_s']:.1f}", mflops_per_image=f"{r['mflops']:.4g}")
            if mixed:
                row.update(backbone=r["backbone"], images_per_s_b1=f"{r['images_per_s_b1']:.1f}",
                           params=r["params"])
        writer.writerow(row)
    md_path, csv_path = study.write_outputs(results_dir, out_name, {".md": md, ".csv": buf.getvalue()})
    return md_path, csv_path
