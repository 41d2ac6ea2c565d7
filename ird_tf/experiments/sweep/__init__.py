"""The resolution sweep: its settings (``config``), the list of its runs (``plan``), running them
(``run``), its tables (``tables``), the attention figure (``figure``) and the ablation plot
(``ablation_plot``) that read its results, and the command (``cli``, ``python -m
ird_tf.experiments.sweep``)."""

from ird_tf.experiments.sweep.cli import build_parser, main, resolve
from ird_tf.experiments.sweep.config import (
    Method,
    SweepConfig,
    default_methods,
    describe,
    load_sweep,
    localisation_key,
    run_config,
    save_sweep,
    teacher_config,
)
from ird_tf.experiments.sweep.plan import Planned, plan
from ird_tf.experiments.sweep.tables import write_tables

__all__ = [
    "Method", "Planned", "SweepConfig", "build_parser", "default_methods", "describe", "load_sweep",
    "localisation_key", "main", "plan", "resolve", "run_config", "save_sweep", "teacher_config",
    "write_tables",
]
