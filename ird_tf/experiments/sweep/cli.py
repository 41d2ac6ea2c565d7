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
        tuned: {kind: tuned, grid: {fm: [0, 0.1], at: [0, 1, 10]}}   # weights chosen on validation
      localisation: [alone, fm, fm_at]   # methods (and the teacher) scored on the lesion masks
      localisation_weighting: gradcam
      cost: null                         # images/s and FLOPs columns; null = in native mode only

A method's ``loss`` lists its term weights (terms it does not list are off) and any loss option it
changes (``at_norm``, ``at_distance``, ``at_weighting``, ``at_classes``, ``kd_temperature`` ...); the
other options come from the file's ``loss:`` section, whose term weights are not used. The sweep sets
``data.student_mag``, ``data.mode`` and ``run.seed`` of each run; everything else is the file's.
A ``tuned`` method (``grid`` optional: tune's default FM {0, 0.1} x AT+ {0, 1, 10}; each list holds 0)
chooses its weights per seed and magnification on the validation split, as ``python -m
ird_tf.experiments.tune`` does (the same candidates and record, under ``runs/tuning/``); its row gives
the chosen candidate's test scores, and the table lists each choice.

Each run lives in the run directory the ``distill`` command would use for the same settings, so
finished runs are reused (by this sweep, another sweep file, or ``distill`` itself) and a killed run
resumes. The tables are rewritten after every run. Localisation: maps of the true class
(``localisation_weighting``, default plain Grad-CAM: the same explainer for every model, and not the
AT+ map the distilled students were trained to match) on each model's own input view of the test
split, scored with :mod:`ird_tf.evaluation.localisation` and cached in the run directory.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.experiments import study
from ird_tf.experiments.sweep.config import SweepConfig, load_sweep
from ird_tf.experiments.sweep.plan import plan

COMMAND = study.StudyCommand(
    module="sweep", section="sweep", load=load_sweep, file_help="sweep file (experiments/configs/)",
    quick_help="smoke run: 1 epoch (teacher too), first seed; writes sweep_<name>_quick.md/.csv",
    outputs="tables", dry_run_help="list the runs and whether they finished; train nothing",
    print_config=True)


def build_parser():
    return study.build_parser(COMMAND, __doc__)


def resolve(args) -> tuple[ExperimentConfig, SweepConfig, str]:
    """(base, sweep, table name) from the command line; ConfigError names the bad setting."""
    return study.resolve(COMMAND, args)


def _run(base: ExperimentConfig, sweep: SweepConfig, command: str, results_dir: Path, out_name: str) -> int:
    from ird_tf.experiments.sweep.run import run_sweep

    return run_sweep(base, sweep, command=command, results_dir=results_dir, out_name=out_name)


def main(argv: Sequence[str] | None = None) -> int:
    return study.main(COMMAND, __doc__, argv, run=_run,
                      dry_run=lambda base, sweep: study.print_dry_run(plan(base, sweep)))


if __name__ == "__main__":
    sys.exit(main())
