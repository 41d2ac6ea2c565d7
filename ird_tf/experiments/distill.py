"""Distil a high-magnification Teacher into a low-magnification Student.

    python -m ird_tf.experiments.distill --res 2.5

With no data option it runs on the embedded synthetic H&E benchmark (generated on first use). It finds
the teacher trained for the same data, fold, backbone and seed, or trains it first; then trains the
student on the low-magnification view with CE + FM + AT+ (by default), scores teacher and student on
the validation and test splits, exports the student for TF Serving, and prints a summary table.
A run killed at any moment resumes from its last backup when the same command is run again.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ird_tf.experiments.cli import parse, run_command, start


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse(__doc__, argv)
    return run_command(_distill, args, cfg)


def _distill(args, cfg) -> int:
    from ird_tf.runs import run_student, summary_table

    strategy, splits = start(cfg, args)
    export_base = None if args.no_export else Path("saved_models")
    student, teacher = run_student(cfg, splits, strategy, export_base=export_base)
    print(summary_table(cfg, teacher, student), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
