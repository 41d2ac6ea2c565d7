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
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ird_tf.config import PRESETS, ConfigError, ExperimentConfig, preset
from ird_tf.experiments.label_free_config import SECTION, LabelFreeConfig, load_study, save_study
from ird_tf.experiments.label_free_plan import Planned, plan
from ird_tf.experiments.label_free_sets import UnlabeledSet, budget_steps, epochs_for, prepare_sets
from ird_tf.experiments.label_free_tables import plot_curves, write_outputs
from ird_tf.experiments.runs import read_result
from ird_tf.experiments.study import execute, fmt_time, git_commit, select_seeds

RESULTS_DIR = "experiments/results"


# ------------------------------------------------------------------------------------------ run it
def say(msg: str) -> None:
    print(f"[label_free {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_study(base: ExperimentConfig, study: LabelFreeConfig, *, command: str, results_dir: Path,
              out_name: str) -> int:
    """Runs (or reuses) every planned run, rewriting tables and plot after each one trained and at the
    end; 0 when all finished."""
    from ird_tf.experiments.runs import load_splits, setup_runtime

    start = time.time()
    strategy = setup_runtime(base)
    splits = load_splits(base)
    n_train = len(splits.train)
    sets = prepare_sets(base, study, splits)
    planned = plan(base, study, n_train)
    say(f"study {study.name!r}: {len(planned)} runs; {n_train} labeled training images; unlabeled sets "
        + ", ".join(f"+{r:g}x: {s.size} images" for r, s in sets.items())
        + f"; step budget {budget_steps(base, n_train)}; outputs {results_dir / out_name}.md/.csv/.png")
    header = dict(command=command, commit=git_commit(), start=start, trained=0, reused=0, failed=[])
    for i, p in enumerate(planned, 1):
        tag = f"{i}/{len(planned)} {p.label()}"
        _, found, failure = execute(p, splits, strategy, tag=tag, start=start, say=say)
        if failure:
            header["failed"].append(failure)
            continue
        header["reused" if found else "trained"] += 1
        if not found:
            write_outputs(base, study, planned, n_train, results_dir, out_name, header)
    md, _, _ = write_outputs(base, study, planned, n_train, results_dir, out_name, header)
    say(f"finished in {fmt_time(time.time() - start)}: {header['trained']} trained, {header['reused']} "
        f"reused, {len(header['failed'])} failed; table {md}")
    print(md.read_text(), flush=True)
    return 1 if header["failed"] else 0


# ------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, metavar="FILE.yaml", help="study file (experiments/configs/)")
    p.add_argument("--seeds", type=int, metavar="N", help=f"use the first N seeds of {SECTION}.seeds")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1-epoch budget (teacher 1 epoch), first seed; writes *_quick outputs")
    p.add_argument("--preset", choices=PRESETS,
                   help=f"take the experiment settings from this preset instead of the file (the {SECTION}: "
                        "section still comes from the file); outputs get the suffix _<preset>")
    p.add_argument("--sicap", metavar="ROOT", help="SICAPv2 root (overrides data.source and data.root)")
    p.add_argument("--pool", metavar="DIR", help=f"folder of unlabeled images for the extra sets "
                                                 f"(overrides {SECTION}.pool_dir)")
    p.add_argument("--results-dir", default=RESULTS_DIR, help=f"where the outputs go (default {RESULTS_DIR})")
    p.add_argument("--dry-run", action="store_true",
                   help="list the runs, their epochs and whether they finished; train nothing")
    return p


def resolve(args: argparse.Namespace) -> tuple[ExperimentConfig, LabelFreeConfig, str]:
    """(base, study, output name) from the command line; ConfigError names the bad setting."""
    base, study = load_study(args.config)
    out_name = f"label_free_{study.name}"
    if args.preset:
        base = preset(args.preset)
        out_name += f"_{args.preset}"  # never overwrite the file's own outputs
    if args.sicap:
        base.data = replace(base.data, source="sicap", root=args.sicap)
    if args.pool:
        study = replace(study, pool_dir=args.pool)
    study = replace(study, seeds=select_seeds(study.seeds, args.seeds, args.quick, f"{SECTION}.seeds"))
    if args.quick:
        base.optim = replace(base.optim, epochs=1, teacher_epochs=1)
        out_name += "_quick"
    base.validate()
    study.validate(base)
    return base, study, out_name


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before validation imports TensorFlow
    try:
        base, study, out_name = resolve(args)
    except ConfigError as e:
        parser.error(str(e))
    root = base.data.root
    if base.data.source in ("sicap", "folders") and root and not Path(root).is_dir():
        parser.error(f"data.root={root!r} is not a folder")
    if args.dry_run:
        from ird_tf.experiments.runs import load_splits

        n_train = len(load_splits(base).train)
        planned = plan(base, study, n_train)
        print(f"{n_train} labeled training images; step budget {budget_steps(base, n_train)}")
        done = 0
        for i, p in enumerate(planned, 1):
            finished = read_result(p.run_dir) is not None
            done += finished
            extra = ""
            if p.uset is not None:
                steps = p.cfg.optim.epochs * math.ceil(p.uset.size / base.data.batch_size)
                extra = f" [{p.uset.size} unlabeled images, {p.cfg.optim.epochs} epochs = {steps} steps]"
            state = "finished" if finished else "pending"
            print(f"{i}/{len(planned)} {p.label()}{extra}: {state} ({p.run_dir})")
        print(f"{done}/{len(planned)} runs finished")
        return 0
    command = "python -m ird_tf.experiments.label_free " + shlex.join(argv)
    return run_study(base, study, command=command, results_dir=Path(args.results_dir), out_name=out_name)


__all__ = [
    "RESULTS_DIR", "SECTION", "LabelFreeConfig", "load_study", "save_study", "UnlabeledSet", "budget_steps",
    "epochs_for", "prepare_sets", "Planned", "plan", "write_outputs", "plot_curves", "run_study",
    "build_parser", "resolve", "main",
]


if __name__ == "__main__":
    sys.exit(main())
