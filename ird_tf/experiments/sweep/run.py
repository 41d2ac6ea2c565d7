"""Running a sweep: every planned run trained or reused, localisation scores and costs measured, the
tables rewritten after each run."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.data.view import InputView
from ird_tf.experiments import study
from ird_tf.experiments.sweep.config import SweepConfig, localisation_key, run_config
from ird_tf.experiments.sweep.plan import Planned, plan
from ird_tf.experiments.sweep.tables import write_tables
from ird_tf.progress import say as _say


def say(msg: str) -> None:
    _say(msg, "sweep")


def localise(p: Planned, splits, sweep: SweepConfig) -> tuple[dict, bool]:
    """Localisation scores of a finished run on the test split: cached, or computed and cached."""
    from ird_tf.evaluation.attention_eval import cached_localisation, localisation_on_split
    from ird_tf.runs import load_classifier

    view = InputView.of(p.cfg.data, p.kind)

    def compute():
        model = load_classifier(p.cfg, view, len(splits.class_names), p.run_dir)
        return localisation_on_split(model, splits.test, view, weighting=sweep.localisation_weighting,
                                     batch_size=p.cfg.data.batch_size)

    return cached_localisation(p.run_dir, compute, key=localisation_key(sweep))


def cost_key(cfg: ExperimentConfig, kind: str) -> tuple[int, str]:
    """(input size, backbone) of a run: what its inference cost depends on."""
    view = InputView.of(cfg.data, kind)
    return view.size, cfg.model.backbone if view.is_teacher else cfg.model.student


def measure_costs(base: ExperimentConfig, sweep: SweepConfig, num_classes: int) -> dict[tuple, dict]:
    """``{(input size, backbone): {"images_per_s", "images_per_s_b1", "mflops", "params"}}`` for the
    teacher and every student (inference images/s at batch 32 and batch 1), measured on freshly built
    models (throughput does not depend on the weights), one after the other in this process."""
    from ird_tf.evaluation.cost import flops_per_image, images_per_second
    from ird_tf.experiments.sweep.config import run_config
    from ird_tf.runs import build_for

    runs = [(base, "teacher")] + [(run_config(base, sweep, m, name, sweep.seeds[0]), method.kind)
                                  for m in sweep.magnifications for name, method in sweep.methods.items()]
    todo = {}
    for cfg, kind in runs:
        todo.setdefault(cost_key(cfg, kind), (cfg, InputView.of(cfg.data, kind)))
    out = {}
    for key in sorted(todo, key=lambda k: (-k[0], k[1])):
        cfg, view = todo[key]
        model = build_for(cfg, view, num_classes, None)
        rate = images_per_second(model, key[0], batch_size=32, min_seconds=sweep.cost_seconds)
        rate1 = images_per_second(model, key[0], batch_size=1, min_seconds=sweep.cost_seconds)
        out[key] = {"images_per_s": rate, "images_per_s_b1": rate1, "mflops": flops_per_image(model) / 1e6,
                    "params": model.count_params()}
        say(f"cost of {key[1]} at {key[0]} px: {rate:.0f} images/s (batch 32), {rate1:.0f} images/s "
            f"(batch 1), {out[key]['mflops']:.3g} MFLOPs/image, {out[key]['params']} parameters")
    return out


def tuned_trainer(base: ExperimentConfig, sweep: SweepConfig, header: dict):
    """The task of a ``tuned`` run: its grid tuned on the validation split (the candidates trained or
    reused, scored on validation only; the record shared with ``python -m ird_tf.experiments.tune``),
    then the chosen candidate scored on the test split, after the choice. The timing of every candidate
    trained here but the chosen one (which the study counts as the run) goes to ``header["timings"]``,
    so the header's compute holds the whole grid."""

    def train(p: Planned, splits, strategy):
        from ird_tf.runs import read_result, run_student, student_dir
        from ird_tf.runs.tuning import candidate_config, grid_points, tune

        method = sweep.methods[p.method]
        cfg = run_config(base, sweep, p.mag, p.method, p.seed)
        dirs = [student_dir(candidate_config(cfg, w)) for w in grid_points(method.tuning_grid)]
        new = [d for d in dirs if read_result(d) is None]
        _, record = tune(cfg, splits, strategy, method.tuning_grid, before_each=study.prepare_run)
        chosen = candidate_config(cfg, record["choice"]["weights"])
        timings = (read_result(d).timing for d in new if d != student_dir(chosen))
        header.setdefault("timings", []).extend(t for t in timings if t)
        study.prepare_run(chosen)
        result, _ = run_student(chosen, splits, strategy)
        return result

    return train


def run_sweep(base: ExperimentConfig, sweep: SweepConfig, *, command: str, results_dir: Path,
              out_name: str) -> int:
    """Runs (or reuses) every planned run, rewriting the tables after each new result (the figure at the
    end); 0 when all finished."""
    from ird_tf.runs import check_inputs, load_splits, setup_runtime

    start = time.time()
    planned = plan(base, sweep)
    strategy = setup_runtime(base)
    splits = load_splits(base)
    check_inputs(base, splits)  # every image and weights file, before the first run starts
    say(f"sweep {sweep.name!r}: {len(planned)} runs ({len(sweep.seeds)} seed(s) x (teacher + "
        f"{len(sweep.magnifications)} magnification(s) x {len(sweep.methods)} method(s))), "
        f"mode {sweep.mode}; tables: {results_dir / out_name}.md/.csv")
    if sweep.localised and not ("mask" in splits.test.columns and splits.test["mask"].notna().any()):
        say("the test split has no lesion masks: no localisation columns")
        sweep = replace(sweep, localisation=())
    costs = measure_costs(base, sweep, len(splits.class_names)) if sweep.measures_cost else None
    header = dict(command=command, commit=study.git_commit(), start=start)

    tuned = any(m.kind == "tuned" for m in sweep.methods.values())

    def after(p: Planned, reused: bool, tag: str) -> None:
        nonlocal planned
        if tuned:  # a tuned run's directory is known once its choice is recorded
            planned = plan(base, sweep)
            p = planned[planned.index(p)]
        new = not reused
        if sweep.localised and p.method in (*sweep.localised, "teacher"):
            scores, cached = localise(p, splits, sweep)
            new = new or not cached
            if not cached:
                say(f"run {tag}: localisation energy {scores['energy_inside']:.3f}, pointing "
                    f"{scores['pointing_game']:.3f} (n={scores['n']})")
        if new:  # nothing new after a reused run: the tables are rewritten at the next new result or the end
            write_tables(base, sweep, planned, results_dir, out_name, header, costs, figures=False)

    study.run_all(list(planned), splits, strategy, say=say, start=start, header=header, after=after,
                  trainers={"tuned": tuned_trainer(base, sweep, header)})
    md, _ = write_tables(base, sweep, planned, results_dir, out_name, header, costs)
    say(f"finished in {study.fmt_time(time.time() - start)}: {header['trained']} trained, "
        f"{header['reused']} reused, {len(header['failed'])} failed; table {md}")
    print(md.read_text(), flush=True)
    return 1 if header["failed"] else 0


__all__ = ["localise", "measure_costs", "run_sweep"]
