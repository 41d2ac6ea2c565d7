"""Run identity: which settings make a new run, and what the directory names say."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from ird_tf.config import ExperimentConfig


def test_teacher_is_shared_across_student_settings_but_not_teacher_settings():
    from dataclasses import replace

    from ird_tf.runs import student_dir, teacher_dir

    cfg = ExperimentConfig()
    same = [replace(cfg, loss=replace(cfg.loss, at=0.0, kd=1.0)),
            replace(cfg, optim=replace(cfg.optim, epochs=3)),
            replace(cfg, data=replace(cfg.data, student_mag=1.25, mode="native"))]
    other = [replace(cfg, loss=replace(cfg.loss, label_smoothing=0.1)),
             replace(cfg, optim=replace(cfg.optim, learning_rate=1e-4)),
             replace(cfg, optim=replace(cfg.optim, teacher_epochs=5)),
             replace(cfg, run=replace(cfg.run, seed=32)),
             replace(cfg, model=replace(cfg.model, backbone="vgg16"))]
    assert {teacher_dir(c) for c in same} == {teacher_dir(cfg)}
    assert len({teacher_dir(c) for c in [cfg, *other]}) == 1 + len(other)
    assert len({student_dir(c) for c in [cfg, *same]}) == 1 + len(same)


def test_where_files_go_is_not_part_of_a_students_identity():
    """The cache folder and the output folder change where files are, not what is trained: the same
    student name under another output root (so a moved project, or the fault tests' two copies of one
    command, compare run for run); verbosity neither."""
    from ird_tf.runs import student_dir

    cfg = ExperimentConfig()
    moved = replace(cfg, data=replace(cfg.data, cache_dir="/elsewhere/cache"),
                    run=replace(cfg.run, output_dir="/elsewhere/runs", verbose=0))
    assert student_dir(moved).name == student_dir(cfg).name
    assert student_dir(moved).parent == Path("/elsewhere/runs/students")
    assert student_dir(replace(cfg, run=replace(cfg.run, seed=32))).name != student_dir(cfg).name


def test_new_synthetic_data_is_a_new_run(monkeypatch):
    """A new drawing of the synthetic benchmark (its generator revision) regenerates the images, so it
    must also give new teachers and students (and new label-free sets): one identity for all three."""
    from ird_tf.data.synthetic import dataset
    from ird_tf.experiments.label_free.config import LabelFreeConfig
    from ird_tf.experiments.label_free.sets import unlabeled_sets
    from ird_tf.runs import data_identity, student_dir, teacher_dir

    cfg = ExperimentConfig()
    before = (teacher_dir(cfg), student_dir(cfg), data_identity(cfg.data),
              unlabeled_sets(cfg, LabelFreeConfig(), 100)[0.0].folder)
    monkeypatch.setattr(dataset, "GENERATOR_REVISION", dataset.GENERATOR_REVISION + 1)
    after = (teacher_dir(cfg), student_dir(cfg), data_identity(cfg.data),
             unlabeled_sets(cfg, LabelFreeConfig(), 100)[0.0].folder)
    assert all(a != b for a, b in zip(before, after, strict=True))
    assert data_identity(cfg.data)["data"] == dataset.dataset_root(".", cfg.data.synthetic).name


def test_names_start_with_what_tells_runs_apart():
    from ird_tf.runs import student_dir, teacher_dir

    cfg = ExperimentConfig()
    assert teacher_dir(cfg).name.startswith("10x_s22_vgg_tiny_Val1_")
    assert student_dir(cfg).name.startswith("2.5x_upsampled_ce+fm+at_s22_vgg_tiny_Val1_")
    assert student_dir(cfg, "alone").name.startswith("2.5x_upsampled_alone_s22_")


def test_run_bookkeeping_and_study_commands_never_import_tensorflow():
    code = ("import sys, ird_tf.runs, ird_tf.experiments.sweep, ird_tf.experiments.label_free, "
            "ird_tf.experiments.study, ird_tf.experiments.cli; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
