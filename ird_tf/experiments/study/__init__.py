"""What every multi-run study (the resolution sweep, the label-free study) shares: the command line,
checks of values read from a study file, the execution of one planned run (trained, resumed or reused)
with progress lines, and what every result table states."""

from ird_tf.experiments.study.cli import (
    RESULTS_DIR,
    StudyCommand,
    build_parser,
    main,
    print_dry_run,
    resolve,
    select_seeds,
)
from ird_tf.experiments.study.execute import PlannedRun, execute, prepare_run, run_all
from ird_tf.experiments.study.report import (
    add_paired,
    common_lines,
    csv_preamble,
    fmt_time,
    git_commit,
    nan_if_none,
    paired_section,
    stat_cell,
    write_outputs,
)
from ird_tf.experiments.study.study_file import load_study_file, save_study_file
from ird_tf.experiments.study.values import (
    as_integer,
    as_integers,
    as_list,
    as_number,
    as_numbers,
    build_section,
)

__all__ = [
    "PlannedRun", "RESULTS_DIR", "StudyCommand", "add_paired", "as_integer", "as_integers", "as_list",
    "as_number",
    "as_numbers", "build_parser", "build_section", "common_lines", "csv_preamble", "execute", "fmt_time",
    "git_commit", "load_study_file", "main", "nan_if_none", "paired_section", "prepare_run", "print_dry_run",
    "resolve", "run_all", "save_study_file", "select_seeds", "stat_cell", "write_outputs",
]
