"""The learning-rate schedule: its curve, its settings, and a resumed run that follows the same curve."""

import math
from dataclasses import asdict

import keras
import numpy as np
import pytest
import tensorflow as tf

from ird_tf.config import ConfigError, OptimConfig, preset
from ird_tf.models import build_classifier
from ird_tf.runs.identity import optim_identity, teacher_dir
from ird_tf.training import Supervised, fit, make_optimizer
from ird_tf.training.callbacks import read_history
from ird_tf.training.loop import learning_rate

S, B, C = 16, 4, 4


def lr_at(schedule, step: int) -> float:
    return float(schedule(step))


def test_cosine_schedule_warms_up_then_decays_to_the_final_fraction():
    cfg = OptimConfig(learning_rate=1e-3, epochs=10, schedule="cosine", warmup_epochs=1.0)
    schedule = learning_rate(cfg, steps_per_epoch=20)  # 200 steps, 20 of warm-up
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    assert lr_at(schedule, 0) == pytest.approx(0.0)
    assert lr_at(schedule, 10) == pytest.approx(0.5e-3, rel=1e-5)
    assert lr_at(schedule, 20) == pytest.approx(1e-3, rel=1e-5)
    # half way through the decay: half the peak; at the end: 0
    assert lr_at(schedule, 110) == pytest.approx(0.5e-3, rel=1e-4)
    assert lr_at(schedule, 200) == pytest.approx(0.0, abs=1e-9)
    mid = 20 + 0.25 * 180
    assert lr_at(schedule, int(mid)) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.25)), rel=1e-4)
    floor = learning_rate(
        OptimConfig(learning_rate=1e-3, epochs=2, schedule="cosine", final_lr_fraction=0.1), 5)
    assert lr_at(floor, 0) == pytest.approx(1e-3) and lr_at(floor, 10) == pytest.approx(1e-4, rel=1e-5)


def test_constant_schedule_is_the_number_and_paper_keeps_it():
    assert learning_rate(OptimConfig(learning_rate=3e-4)) == 3e-4
    paper = preset("paper").optim
    assert (paper.schedule, paper.learning_rate, paper.name) == ("constant", 1e-4, "adam")
    cpu = preset("cpu").optim
    assert (cpu.schedule, cpu.learning_rate, cpu.warmup_epochs) == ("cosine", 1e-3, 1.0)


def test_schedule_settings_are_checked():
    with pytest.raises(ConfigError, match=r"optim\.schedule='step'"):
        OptimConfig(schedule="step").validate()
    with pytest.raises(ConfigError, match=r"optim\.final_lr_fraction"):
        OptimConfig(final_lr_fraction=2.0).validate()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        make_optimizer(OptimConfig(schedule="cosine"))


def test_constant_runs_keep_their_names_and_a_schedule_makes_new_ones():
    before = {"name": "adam", "learning_rate": 1e-3, "weight_decay": 0.0, "epochs": 8, "teacher_epochs": 20}
    assert optim_identity(asdict(OptimConfig())) == before  # as named before schedules existed
    cosine = asdict(OptimConfig(schedule="cosine", warmup_epochs=1.0))
    assert optim_identity(cosine) == {k: v for k, v in cosine.items() if k != "recalibrate_bn"}
    recal = asdict(OptimConfig(schedule="cosine", recalibrate_bn=True))
    assert optim_identity(recal) == recal
    constant = preset("cpu")
    constant.optim = OptimConfig(learning_rate=1e-3, epochs=8, teacher_epochs=20)
    assert teacher_dir(constant) != teacher_dir(preset("cpu"))


def _data(n=16):
    rng = np.random.default_rng(0)
    x = {"hr": rng.random((n, S, S, 3), dtype=np.float32)}
    y = rng.integers(0, C, n).astype(np.int32)
    return (tf.data.Dataset.from_tensor_slices((x, y)).batch(B).repeat(),
            tf.data.Dataset.from_tensor_slices((x, y)).batch(8))


def _model(cfg: OptimConfig, steps: int) -> Supervised:
    keras.utils.set_random_seed(0)
    model = Supervised(build_classifier("vgg_tiny", C, (S, S, 3), name="t"), input_key="hr")
    model.compile(optimizer=make_optimizer(cfg, steps))
    return model


@pytest.mark.timeout(300)
def test_a_resumed_run_follows_the_schedule_of_an_uninterrupted_one(tmp_path):
    cfg = OptimConfig(learning_rate=1e-3, epochs=4, schedule="cosine", warmup_epochs=1.0)
    steps = 3
    train, val = _data()
    whole = _model(cfg, steps)
    fit(whole, train, val, run_dir=tmp_path / "whole", epochs=4, steps_per_epoch=steps, num_classes=C,
        verbose=0, attention_images=0)
    # the same run stopped after 2 epochs, then continued in a new model and optimizer from its backup
    first = _model(cfg, steps)
    fit(first, train, val, run_dir=tmp_path / "split", epochs=2, steps_per_epoch=steps, num_classes=C,
        verbose=0, attention_images=0)
    second = _model(cfg, steps)
    fit(second, train, val, run_dir=tmp_path / "split", epochs=4, steps_per_epoch=steps, num_classes=C,
        verbose=0, attention_images=0)
    assert int(second.optimizer.iterations) == int(whole.optimizer.iterations) == 4 * steps
    expected = [lr_at(learning_rate(cfg, steps), (e + 1) * steps) for e in range(4)]
    for run in ("whole", "split"):
        lrs = read_history(tmp_path / run / "history.csv")["learning_rate"]
        np.testing.assert_allclose(lrs, expected, rtol=1e-5, atol=1e-9)


def test_batch_norm_recalibration_averages_the_batch_statistics_and_changes_no_weight():
    from ird_tf.training.callbacks import recalibrate_batch_norm

    inp = keras.Input((3,), name="hr")
    bn = keras.layers.BatchNormalization(momentum=0.9)
    model = keras.Model(inp, {"logits": bn(inp)})
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, 2.0, (8, 3)).astype(np.float32) for loc in (0.0, 1.0, 5.0)]
    ds = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros(24, np.int32))).batch(8)
    ds = ds.map(lambda x, y: ({"hr": x, "lr": x}, y))
    gamma, beta = bn.gamma.numpy().copy(), bn.beta.numpy().copy()
    assert recalibrate_batch_norm(model, ds, "hr") == 3
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0), rtol=1e-4)
    assert bn.momentum == 0.9
    np.testing.assert_array_equal(bn.gamma.numpy(), gamma)
    np.testing.assert_array_equal(bn.beta.numpy(), beta)
    assert recalibrate_batch_norm(keras.Sequential([keras.layers.Dense(2)]), ds) == 0  # no BatchNorm: no-op


def test_max_late_swing_reads_the_last_third():
    from ird_tf.evaluation.curves import late_epochs, max_late_swing

    assert late_epochs(20) == 7 and late_epochs(3) == 2 and late_epochs(1) == 1
    curve = [0.2, 0.9, 0.1] + [0.5] * 10 + [0.80, 0.82, 0.78, 0.85, 0.84, 0.86, 0.83]  # 20 epochs
    assert max_late_swing(curve) == pytest.approx(0.07)
    assert math.isnan(max_late_swing([0.5]))


def test_a_reused_recalibration_forward_averages_each_new_pass_and_keeps_momentum():
    """The callback traces the forward once (momentum 0 in its graph) and reuses it every epoch: each
    pass still ends with the plain average of that pass's batch statistics."""
    from ird_tf.training.callbacks import recalibrate_batch_norm, training_forward

    inp = keras.Input((3,))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inp, {"logits": bn(inp)})
    forward = training_forward(model)
    rng = np.random.default_rng(1)
    for loc in (0.0, 3.0):
        batches = [rng.normal(loc + k, 1.0 + k, (8, 3)).astype(np.float32) for k in range(3)]
        ds = tf.data.Dataset.from_tensor_slices(np.concatenate(batches)).batch(8)
        assert recalibrate_batch_norm(model, ds, forward=forward) == 3
        np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0),
                                   rtol=1e-5)
        np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0),
                                   rtol=1e-4)
        assert bn.momentum == 0.99
