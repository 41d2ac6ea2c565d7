"""Label-free distillation (DiPalma et al. 2021): student accuracy against the size of the unlabeled set.

    python -m ird_tf.experiments.label_free --config experiments/configs/label_free_cpu.yaml \
        [--seeds N] [--quick] [--dry-run] [--preset paper --sicap ROOT --pool DIR]

The config file holds a complete experiment config (the ``ExperimentConfig`` sections, the same as
``sweep_cpu.yaml`` so the teacher and the labeled reference students are the sweep's own runs) plus a
``label_free:`` section::

    label_free:
      name: cpu                        # -> experiments/results/label_free_cpu.md, .csv and .png
      magnifications: [1.25, 0.625]
      extra_ratios: [0, 1, 2, 4]       # extra unlabeled images, x the fold's labeled training count
      pool_seed: 2024                  # seed of the extra synthetic pool (not the benchmark's)
      pool_dir: null                   # or a folder of unlabeled images as the extra pool (any source)
      mode: upsampled
      seeds: [22, 32, 43]
      methods:                         # name -> loss term weights and options; no ce (there are no labels)
        kd_fmap: {kd: 1, fmap: 1}
        kd_fmap_at: {kd: 1, fmap: 1, at: 10, at_classes: target}
      references: [alone, fm_at]       # labeled students of the sweep (ird_tf.experiments.sweep methods)

Unlabeled set of ratio r: the fold's N training images (their labels unused) plus the first r x N
images of one extra pool, in file order, so the sets are nested. The pool is the synthetic benchmark
with the file's settings and only another seed and patient count: new patients from the same
distribution, never the test patients. Its images are renamed ``X<pool_seed>-P...`` so no slide id
collides with the benchmark's. On SICAPv2 or class folders the pool is ``pool_dir`` (``--pool DIR``):
any folder of unlabeled patches at the teacher's magnification, read recursively in sorted order (for
instance patches of other slides from the same lab); it must not hold test images. Each set is a
folder of hard links (copies across file systems) under ``<data.cache_dir>/label_free/``, written
once and reused, and given to the student as ``data.unlabeled``: the run is exactly ``distill
--unlabeled DIR`` (CE off, labels never read in training; the best epoch is still chosen on the
labeled validation split, as for every run).

Fixed step budget: a larger unlabeled set must not win by training longer. Each label-free run gets
the whole number of epochs (at least 1) that brings epochs x steps-per-epoch closest to the labeled
runs' ``optim.epochs`` x ceil(N / batch); the tables give each row's epochs and steps.

Every run lives in the run directory ``distill``/``sweep`` would use for the same settings, so
finished runs (including the sweep's teacher and reference students) are reused and killed runs
resume. Tables and plot are rewritten after every run trained, and at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.experiments import study
from ird_tf.experiments.label_free.config import SECTION, LabelFreeConfig, load_study
from ird_tf.experiments.label_free.plan import Planned, plan
from ird_tf.experiments.label_free.sets import budget_steps

COMMAND = study.StudyCommand(
    module="label_free", section=SECTION, load=load_study, file_help="study file (experiments/configs/)",
    quick_help="smoke run: 1-epoch budget (teacher 1 epoch), first seed; writes *_quick outputs",
    outputs="outputs", dry_run_help="list the runs, their epochs and whether they finished; train nothing",
    dry_run_reads_data=True)


def _pool_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pool", metavar="DIR", help=f"folder of unlabeled images for the extra sets "
                                                 f"(overrides {SECTION}.pool_dir)")


def _with_pool(s: LabelFreeConfig, args: argparse.Namespace) -> LabelFreeConfig:
    return replace(s, pool_dir=args.pool) if args.pool else s


def build_parser() -> argparse.ArgumentParser:
    return study.build_parser(COMMAND, __doc__, _pool_option)


def resolve(args: argparse.Namespace) -> tuple[ExperimentConfig, LabelFreeConfig, str]:
    """(base, study, output name) from the command line; ConfigError names the bad setting."""
    return study.resolve(COMMAND, args, _with_pool)


def _dry_run(base: ExperimentConfig, s: LabelFreeConfig) -> int:
    from ird_tf.runs import load_splits

    n_train = len(load_splits(base).train)
    print(f"{n_train} labeled training images; step budget {budget_steps(base, n_train)}")

    def extra(p: Planned) -> str:
        if p.uset is None:
            return ""
        steps = p.cfg.optim.epochs * math.ceil(p.uset.size / base.data.batch_size)
        return f" [{p.uset.size} unlabeled images, {p.cfg.optim.epochs} epochs = {steps} steps]"

    return study.print_dry_run(plan(base, s, n_train), extra)


def _run(base: ExperimentConfig, s: LabelFreeConfig, command: str, results_dir: Path, out_name: str) -> int:
    from ird_tf.experiments.label_free.run import run_study

    return run_study(base, s, command=command, results_dir=results_dir, out_name=out_name)


def main(argv: Sequence[str] | None = None) -> int:
    return study.main(COMMAND, __doc__, argv, dry_run=_dry_run, run=_run, extra_options=_pool_option,
                      adjust=_with_pool)


if __name__ == "__main__":
    sys.exit(main())
