"""The application floor: run directories and the tasks that fill them.

Bookkeeping (no TensorFlow import, so ``--help`` and ``--dry-run`` stay fast): run identity and
directory names, result files, ``lock.pid`` claims. Tasks (import TensorFlow when called): runtime
setup, data splits, train a teacher, train a student, load a trained classifier, evaluate, export.
Commands and studies (``ird_tf.experiments``) sit above and call these.
"""

from ird_tf.runs.claims import run_claim
from ird_tf.runs.classifiers import build_for, load_classifier
from ird_tf.runs.environment import check_inputs, datasets, load_splits, setup_runtime
from ird_tf.runs.evaluate import evaluate, summary_table
from ird_tf.runs.export import export_student
from ird_tf.runs.identity import data_identity, digest, student_dir, teacher_dir
from ird_tf.runs.results import SPLITS, RunResult, read_result, write_result
from ird_tf.runs.train import KINDS, run_student, run_teacher

__all__ = [
    "KINDS", "SPLITS", "RunResult", "build_for", "check_inputs", "data_identity", "datasets", "digest", "evaluate",
    "export_student", "load_classifier", "load_splits", "read_result", "run_claim", "run_student",
    "run_teacher", "setup_runtime", "student_dir", "summary_table", "teacher_dir", "write_result",
]
