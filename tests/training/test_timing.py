"""Where a run's time goes: the stopwatch's arithmetic worked by hand, and a real ``fit`` feeding it."""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from ird_tf.training.timing import Stopwatch, breakdown


def test_steady_cost_is_calls_times_the_median_call():
    sw = Stopwatch()
    for seconds in (3.0, 1.0, 1.0, 1.5):  # the first call traces
        sw.add("train_step", seconds)
    sw.add("validation", 0.5)
    assert sw.total("train_step") == pytest.approx(6.5)
    assert sw.steady("train_step") == pytest.approx(4 * 1.25)
    assert sw.steady("validation") == pytest.approx(0.5) and sw.steady("absent") == 0.0
    summary = sw.summary(wall=10.0)
    assert summary["compute"] == pytest.approx(5.0 + 0.5)
    assert summary["phases"]["train_step"] == {"seconds": 6.5, "calls": 4, "steady": 5.0}


def test_breakdown_parts_add_up_to_the_wall_time():
    sw = Stopwatch()
    for seconds in (2.0, 1.0, 1.0):
        sw.add("train_step", seconds)
    for seconds in (0.9, 0.3, 0.3):
        sw.add("validation", seconds)
    for seconds in (1.0, 0.5, 0.5):  # validation 0.9 + 0.3 + 0.3 inside, so 0.5 of checkpoints etc.
        sw.add("epoch_end", seconds)
    parts = breakdown([sw.summary(wall=8.0), sw.summary(wall=8.0)])
    assert parts["compute"] == pytest.approx(2 * (3.0 + 0.9))
    assert parts["first_calls"] == pytest.approx(2 * (1.0 + 0.6))
    assert parts["epoch_end"] == pytest.approx(2 * (2.0 - 1.5))
    assert parts["setup"] == pytest.approx(2 * (8.0 - 3.9 - 1.6 - 0.5))
    parts_sum = sum(parts[k] for k in ("compute", "first_calls", "epoch_end", "setup"))
    assert parts_sum == pytest.approx(parts["wall"])


def test_fit_times_every_step_validation_recalibration_and_epoch_end(tmp_path):
    from ird_tf.training.loop import fit
    from ird_tf.training.supervised import Supervised

    inp = keras.Input((4,), name="hr")
    h = keras.layers.BatchNormalization()(keras.layers.Dense(8)(inp))
    classifier = keras.Model(inp, {"logits": keras.layers.Dense(2)(h)})
    model = Supervised(classifier, input_key="hr")
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 4)).astype(np.float32), rng.integers(0, 2, 24).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices(({"hr": x}, y))
    sw = Stopwatch()
    t0 = time.perf_counter()
    fit(model, data.repeat().batch(8), data.batch(8), run_dir=tmp_path, epochs=3, steps_per_epoch=2,
        num_classes=2, val_input_key="hr", verbose=0, calibration_ds=data.batch(8), stopwatch=sw)
    wall = time.perf_counter() - t0
    assert len(sw.calls["train_step"]) == 3 * 2 and len(sw.calls["fit_start"]) == 1
    assert len(sw.calls["restore"]) == 1 and len(sw.calls["train_end"]) == 1
    assert len(sw.calls["keras_setup"]) == 1 and len(sw.calls["keras_end"]) == 1
    assert len(sw.calls["between_steps"]) == 3 * (2 - 1) and len(sw.calls["between_epochs"]) == 3 - 1
    assert len(sw.calls["validation"]) == len(sw.calls["recalibration"]) == len(sw.calls["epoch_end"]) == 3
    for validation, recalibration, epoch_end in zip(sw.calls["validation"], sw.calls["recalibration"],
                                                    sw.calls["epoch_end"], strict=True):
        assert 0 < validation + recalibration <= epoch_end  # both happen inside the epoch's end
    # every second of the run has a name: the phases are disjoint and cover nearly all of it (what is
    # left: building the callbacks, reading the history)
    named = sum(sw.total(n) for n in ("restore", "keras_setup", "fit_start", "train_step", "between_steps",
                                      "between_epochs", "epoch_end", "train_end", "keras_end", "finish"))
    assert 0.9 * wall <= named <= wall


def test_garbage_collections_inside_the_block_are_timed_by_generation():
    import gc

    from ird_tf.training.timing import collections_timed

    sw = Stopwatch()
    with collections_timed(sw):
        gc.collect(2)
        gc.collect(0)
    gc.collect()  # outside: not counted
    assert len(sw.calls["gc2"]) == 1 and len(sw.calls["gc0"]) == 1
    assert all(s >= 0 for s in sw.calls["gc2"] + sw.calls["gc0"])
