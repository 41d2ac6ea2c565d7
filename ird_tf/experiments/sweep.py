"""The resolution sweep: every (student magnification, method, seed) plus the 10x teacher, one table.

    python -m ird_tf.experiments.sweep --config experiments/configs/sweep_cpu.yaml [--seeds N] [--quick]

The config file holds a complete experiment config (the ``ExperimentConfig`` sections) plus a
``sweep:`` section::

    sweep:
      name: cpu                          # -> experiments/results/sweep_cpu.md and .csv
      magnifications: [5, 2.5, 1.25, 0.625]
      mode: upsampled                    # or native (the student reads the small image)
      seeds: [22, 32, 43]
      methods:                           # name -> how the student is trained
        alone: {kind: alone}             # trained alone at that magnification, cross-entropy only
        fm: {loss: {ce: 1, fm: 0.1}}
        fm_at: {loss: {ce: 1, fm: 0.1, at: 10}}
        kd: {loss: {ce: 1, kd: 1}}
      localisation: [alone, fm, fm_at]   # methods (and the teacher) scored on the lesion masks
      localisation_weighting: gradcam
      cost: null                         # images/s and FLOPs columns; null = in native mode only

A method's ``loss`` lists its term weights (terms it does not list are off) and any loss option it
changes (``at_norm``, ``at_distance``, ``at_weighting``, ``at_classes``, ``kd_temperature`` ...); the
other options come from the file's ``loss:`` section, whose term weights are not used. The sweep sets
``data.student_mag``, ``data.mode`` and ``run.seed`` of each run; everything else is the file's.

Each run lives in the run directory the ``distill`` command would use for the same settings, so
finished runs are reused (by this sweep, another sweep file, or ``distill`` itself) and a killed run
resumes. The tables are rewritten after every run. Localisation: maps of the true class
(``localisation_weighting``, default plain Grad-CAM: the same explainer for every model, and not the
AT+ map the distilled students were trained to match) on each model's own input view of the test
split, scored with :mod:`ird_tf.evaluation.localisation` and cached in the run directory.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import yaml

from ird_tf.config import PRESETS, ConfigError, ExperimentConfig, preset
from ird_tf.experiments.runs import read_result
from ird_tf.experiments.study import execute, fmt_time, git_commit, select_seeds
from ird_tf.experiments.sweep_config import (
    Method,
    SweepConfig,
    default_methods,
    load_sweep,
    localisation_key,
    save_sweep,
)
from ird_tf.experiments.sweep_plan import Planned, plan
from ird_tf.experiments.sweep_tables import write_tables

RESULTS_DIR = "experiments/results"


# ------------------------------------------------------------------------------------------ run it
def say(msg: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load_classifier(p: Planned, num_classes: int):
    """The trained classifier of a finished run (best epoch), on its own input size."""
    from ird_tf.models import build_classifier

    d = p.cfg.data
    size = d.image_size if p.kind == "teacher" else d.student_size
    model = build_classifier(p.cfg.model.backbone, num_classes, (size, size, 3), None,
                             name="teacher" if p.kind == "teacher" else "student")
    model.load_weights(str(p.run_dir / "best.weights.h5"))
    return model


def localise(p: Planned, splits, sweep: SweepConfig) -> tuple[dict, bool]:
    """Localisation scores of a finished run on the test split: cached, or computed and cached."""
    from ird_tf.evaluation.attention_eval import cached_localisation, localisation_on_split

    d = p.cfg.data
    teacher = p.kind == "teacher"

    def compute():
        model = load_classifier(p, len(splits.class_names))
        return localisation_on_split(
            model, splits.test, image_size=d.image_size, factor=1 if teacher else d.factor,
            mode="upsampled" if teacher else d.mode, input_key="hr" if teacher else "lr",
            weighting=sweep.localisation_weighting, batch_size=d.batch_size)

    return cached_localisation(p.run_dir, compute, key=localisation_key(sweep))


def measure_costs(base: ExperimentConfig, sweep: SweepConfig, num_classes: int) -> dict[int, dict]:
    """``{input size: {"images_per_s", "mflops"}}`` for the teacher's and every student's input size,
    measured on freshly built models (throughput does not depend on the weights)."""
    from ird_tf.evaluation.attention_eval import flops_per_image, images_per_second
    from ird_tf.models import build_classifier

    sizes = sorted({base.data.image_size}
                   | {replace(base.data, student_mag=m, mode=sweep.mode).student_size
                      for m in sweep.magnifications}, reverse=True)
    out = {}
    for size in sizes:
        model = build_classifier(base.model.backbone, num_classes, (size, size, 3), None, name=f"cost{size}")
        rate = images_per_second(model, size, batch_size=32, min_seconds=sweep.cost_seconds)
        out[size] = {"images_per_s": rate, "mflops": flops_per_image(model) / 1e6}
        say(f"cost at {size} px: {rate:.0f} images/s (batch 32), {out[size]['mflops']:.2f} MFLOPs/image")
    return out


def run_sweep(base: ExperimentConfig, sweep: SweepConfig, *, command: str, results_dir: Path,
              out_name: str) -> int:
    """Runs (or reuses) every planned run and rewrites the tables after each; 0 when all finished."""
    from ird_tf.experiments.runs import load_splits, setup_runtime

    start = time.time()
    planned = plan(base, sweep)
    strategy = setup_runtime(base)
    splits = load_splits(base)
    say(f"sweep {sweep.name!r}: {len(planned)} runs ({len(sweep.seeds)} seed(s) x (teacher + "
        f"{len(sweep.magnifications)} magnification(s) x {len(sweep.methods)} method(s))), "
        f"mode {sweep.mode}; tables: {results_dir / out_name}.md/.csv")
    if sweep.localised and not ("mask" in splits.test.columns and splits.test["mask"].notna().any()):
        say("the test split has no lesion masks: no localisation columns")
        sweep = replace(sweep, localisation=())
    costs = measure_costs(base, sweep, len(splits.class_names)) if sweep.measures_cost else None
    header = dict(command=command, commit=git_commit(), start=start)
    failed: list[str] = []
    trained = reused = 0
    for i, p in enumerate(planned, 1):
        tag = f"{i}/{len(planned)} {p.label()}"
        _, found, failure = execute(p, splits, strategy, tag=tag, start=start, say=say)
        if failure:
            failed.append(failure)
            continue
        trained, reused = trained + (not found), reused + found
        if sweep.localised and p.method in (*sweep.localised, "teacher"):
            scores, cached = localise(p, splits, sweep)
            if not cached:
                say(f"run {tag}: localisation energy {scores['energy_inside']:.3f}, pointing "
                    f"{scores['pointing_game']:.3f} (n={scores['n']})")
        header.update(trained=trained, reused=reused, failed=failed)
        write_tables(base, sweep, planned, results_dir, out_name, header, costs)
    md, _ = write_tables(base, sweep, planned, results_dir, out_name, header, costs)
    say(f"finished in {fmt_time(time.time() - start)}: {trained} trained, {reused} reused, "
        f"{len(failed)} failed; table {md}")
    print(md.read_text(), flush=True)
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE.yaml", help="sweep file (experiments/configs/)")
    p.add_argument("--seeds", type=int, metavar="N", help="use the first N seeds of sweep.seeds")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 epoch (teacher too), first seed; writes sweep_<name>_quick.md/.csv")
    p.add_argument("--preset", choices=PRESETS,
                   help="take the experiment settings from this preset instead of the file (the sweep: "
                        "section still comes from the file); tables get the suffix _<preset>")
    p.add_argument("--sicap", metavar="ROOT", help="SICAPv2 root (overrides data.source and data.root)")
    p.add_argument("--results-dir", default=RESULTS_DIR, help=f"where the tables go (default {RESULTS_DIR})")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs and whether they finished; train nothing")
    p.add_argument("--print-config", action="store_true", help="print the resolved sweep file and exit")
    return p


def resolve(args: argparse.Namespace) -> tuple[ExperimentConfig, SweepConfig, str]:
    """(base, sweep, table name) from the command line; ConfigError names the bad setting."""
    base, sweep = load_sweep(args.config)
    if args.preset:
        base = preset(args.preset)
        out_suffix = f"_{args.preset}"  # never overwrite the file's own table
    else:
        out_suffix = ""
    if args.sicap:
        base.data = replace(base.data, source="sicap", root=args.sicap)
    out_name = f"sweep_{sweep.name}{out_suffix}"
    seeds = select_seeds(sweep.seeds, args.seeds, args.quick, "sweep.seeds")
    sweep = replace(sweep, seeds=seeds)
    if args.quick:
        base.optim = replace(base.optim, epochs=1, teacher_epochs=1)
        out_name += "_quick"
    base.validate()
    sweep.validate(base)
    return base, sweep, out_name


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        base, sweep, out_name = resolve(args)
    except ConfigError as e:
        parser.error(str(e))
    if args.print_config:
        sys.stdout.write(yaml.safe_dump({**base.to_dict(), "sweep": sweep.to_dict()}, sort_keys=False))
        return 0
    if args.dry_run:
        planned = plan(base, sweep)
        done = 0
        for i, p in enumerate(planned, 1):
            finished = read_result(p.run_dir) is not None
            done += finished
            print(f"{i}/{len(planned)} {p.label()}: {'finished' if finished else 'pending'} ({p.run_dir})")
        print(f"{done}/{len(planned)} runs finished")
        return 0
    root = base.data.root
    if base.data.source in ("sicap", "folders") and root and not Path(root).is_dir():
        parser.error(f"data.root={root!r} is not a folder; pass the dataset root with --sicap ROOT")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    command = "python -m ird_tf.experiments.sweep " + shlex.join(argv)
    return run_sweep(base, sweep, command=command, results_dir=Path(args.results_dir), out_name=out_name)


__all__ = [
    "RESULTS_DIR", "Method", "SweepConfig", "default_methods", "load_sweep", "save_sweep", "Planned", "plan",
    "write_tables", "load_classifier", "localise", "measure_costs", "run_sweep", "build_parser", "resolve",
    "main",
]


if __name__ == "__main__":
    sys.exit(main())
