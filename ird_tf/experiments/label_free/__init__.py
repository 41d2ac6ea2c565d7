"""The label-free study (DiPalma et al. 2021): its settings (``config``), the unlabeled sets and the
step budget (``sets``), the list of its runs (``plan``), running them (``run``), its tables and plot
(``tables``) and the command (``cli``, ``python -m ird_tf.experiments.label_free``)."""

from ird_tf.experiments.label_free.cli import build_parser, main, resolve
from ird_tf.experiments.label_free.config import SECTION, LabelFreeConfig, load_study, save_study
from ird_tf.experiments.label_free.plan import Planned, plan
from ird_tf.experiments.label_free.sets import UnlabeledSet, budget_steps, epochs_for, prepare_sets
from ird_tf.experiments.label_free.tables import plot_curves, write_outputs

__all__ = [
    "SECTION", "LabelFreeConfig", "Planned", "UnlabeledSet", "budget_steps", "build_parser", "epochs_for",
    "load_study", "main", "plan", "plot_curves", "prepare_sets", "resolve", "save_study", "write_outputs",
]
