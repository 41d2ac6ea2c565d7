"""Compiled models kept across runs: a run that trains an earlier run's model computes exactly what it
would with its own."""

import numpy as np
import tensorflow as tf
from tiny import tiny_experiment

from ird_tf.runs import load_splits, pool, run_student, student_dir, teacher_dir


def _weights(path):
    import h5py

    with h5py.File(path, "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out


def test_a_run_on_a_kept_model_matches_the_same_run_on_its_own_model(tmp_path):
    """Seed 1 then seed 2 in one ``keeping`` block: seed 2's Teacher and Student train seed 1's compiled
    models (two kept models for four runs), and its history and best weights are bit for bit those of
    seed 2 trained on models of its own, in another run folder."""
    def config(seed, folder):
        cfg = tiny_experiment(tmp_path / folder, epochs=2, per_slide=4)
        cfg.run.seed, cfg.run.verbose = seed, 0
        cfg.validate()
        return cfg

    kind, strategy = "distill", tf.distribute.get_strategy()
    shared = config(1, "shared")
    splits = load_splits(shared)
    with pool.keeping():
        for seed in (1, 2):
            run_student(config(seed, "shared"), splits, strategy, kind=kind)
        assert pool.size() == 2  # the Teacher's and the Student's: seed 2 trained on seed 1's models
    assert pool.size() == 0
    alone = config(2, "own")
    run_student(alone, splits, strategy, kind=kind)
    kept = config(2, "shared")
    for a, b in ((teacher_dir(kept), teacher_dir(alone)), (student_dir(kept, kind), student_dir(alone, kind))):
        assert (a / "history.csv").read_text() == (b / "history.csv").read_text()
        wa, wb = _weights(a / "best.weights.h5"), _weights(b / "best.weights.h5")
        assert wa.keys() == wb.keys() and wa
        for name in wa:
            np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


def test_keys_differ_by_everything_but_the_seed(tmp_path):
    cfg = tiny_experiment(tmp_path)
    other = tiny_experiment(tmp_path)
    other.run.seed = cfg.run.seed + 1
    assert pool.pool_key(cfg, role="distill") == pool.pool_key(other, role="distill")
    other.loss.at = cfg.loss.at + 1.0  # a loss weight is a constant of the traced step
    assert pool.pool_key(cfg, role="distill") != pool.pool_key(other, role="distill")
    assert pool.pool_key(cfg, role="distill") != pool.pool_key(cfg, role="alone")


def test_evaluation_datasets_are_shared_within_keeping_only(tmp_path):
    """The validation, test and calibration datasets of a view are built once per ``keeping`` block and
    given to every run that reads the same files the same way; the training stream (seeded) is not."""
    from dataclasses import replace

    from ird_tf.data.view import InputView
    from ird_tf.runs.environment import calibration_dataset, datasets

    cfg = tiny_experiment(tmp_path)
    cfg.validate()
    splits = load_splits(cfg)
    view = InputView.of(cfg.data, "distill")
    with pool.keeping():
        train1, first, _ = datasets(cfg, splits, view)
        train2, again, _ = datasets(cfg, splits, view)
        assert first.keys() == again.keys() == {"val", "test"}
        assert all(first[s] is again[s] for s in first) and first["val"] is not first["test"]
        assert calibration_dataset(cfg, splits, view) is calibration_dataset(cfg, splits, view)
        assert train1(0) is not train2(0)
        other = InputView.of(replace(cfg.data, student_mag=cfg.data.student_mag / 2), "distill")
        assert datasets(cfg, splits, other)[1]["val"] is not first["val"]
    assert datasets(cfg, splits, view)[1]["val"] is not first["val"]
