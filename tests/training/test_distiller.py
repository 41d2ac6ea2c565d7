"""Distiller: frozen teacher (never updated nor watched), terms from the registry on the right views,
label-free training, target-class maps, student-only scoring."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ird_tf.attention import attention_maps
from ird_tf.config import ConfigError, LossConfig
from ird_tf.losses import TermInputs, feature_matching, get_term
from ird_tf.models import build_classifier
from ird_tf.training import Distiller, Supervised

S, B, C = 32, 8, 4


def batch(seed=0, n=B):
    """hr and lr differ (lr is a blurred hr), so a test can tell which model saw which view."""
    rng = np.random.default_rng(seed)
    hr = rng.random((n, S, S, 3), dtype=np.float32)
    lr = tf.image.resize(tf.nn.avg_pool2d(hr, 4, 4, "VALID"), (S, S), method="bilinear").numpy()
    return {"hr": hr, "lr": lr}, rng.integers(0, C, n).astype(np.int32)


def np_cross_entropy(labels, logits):
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return -(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))[np.arange(len(labels)), labels].mean()


def weights(model):
    return [v.numpy().copy() for v in model.weights]


@pytest.fixture(scope="module")
def nets():
    keras.utils.set_random_seed(7)
    return (build_classifier("vgg_tiny", C, (S, S, 3), name="t"),
            build_classifier("vgg_tiny", C, (S, S, 3), name="s"))


@pytest.fixture
def student():
    keras.utils.set_random_seed(8)
    return build_classifier("vgg_tiny", C, (S, S, 3), name="s")


def test_fit_updates_student_only_and_logs_every_term(nets, student):
    teacher, _ = nets
    model = Distiller(teacher, student, LossConfig(ce=1.0, fm=0.1, at=10.0))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = batch(0, 16)
    t0, s0 = weights(teacher), weights(student)
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(B).repeat(), shuffle=False,
                        steps_per_epoch=2, epochs=1, verbose=0).history

    assert set(history) == {"loss", "ce", "fm", "at", "accuracy"}
    assert all(np.isfinite(v[0]) for v in history.values())
    assert not teacher.trainable
    for before, v in zip(t0, teacher.weights, strict=True):
        np.testing.assert_array_equal(before, v.numpy())
    changed = [not np.array_equal(b, v.numpy()) for b, v in zip(s0, student.weights, strict=True)]
    stale = [v.path for v, c in zip(student.weights, changed, strict=True) if not c]
    assert not stale, f"student variables not updated: {stale}"
    assert int(model.optimizer.iterations) == 2


def test_tape_watches_no_teacher_variable(nets, student):
    teacher, _ = nets
    model = Distiller(teacher, student, LossConfig(ce=1.0, fm=0.1, at=10.0))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = batch(1)
    tape, scaled, *_ = model.forward_losses(x, tf.constant(y))
    watched = {id(v) for v in tape.watched_variables()}
    assert watched == {id(v.value) for v in student.trainable_variables}
    assert not watched & {id(v.value) for v in teacher.weights}
    grads = tape.gradient(scaled, model.trainable_variables)
    assert len(grads) == len(student.trainable_variables) and all(g is not None for g in grads)


def test_loss_is_the_weighted_sum_of_registry_terms_on_the_right_views(nets):
    teacher, student = nets
    cfg = LossConfig(ce=1.0, fm=0.1, at=10.0)
    model = Distiller(teacher, student, cfg)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = batch(2)
    _, _, loss, parts, _, _ = model.forward_losses(x, tf.constant(y))
    assert set(parts) == {"ce", "fm", "at"}

    s_out, s_maps = attention_maps(student, x["lr"], classes="all", second_order=False, training=True)
    t_out, t_maps = attention_maps(teacher, x["hr"], classes="all", second_order=False)
    assert float(parts["ce"]) == pytest.approx(np_cross_entropy(y, s_out["logits"]), rel=1e-5)
    assert float(parts["fm"]) == pytest.approx(float(feature_matching(s_out["features"], t_out["features"])),
                                               rel=1e-5)
    swapped = float(feature_matching(student(x["hr"])["features"], teacher(x["lr"])["features"]))
    assert abs(float(parts["fm"]) - swapped) > 1e-3  # the views matter: the oracle can tell them apart
    inputs = TermInputs(labels=y, student=s_out, teacher=t_out, student_maps=s_maps, teacher_maps=t_maps)
    assert float(parts["at"]) == pytest.approx(float(get_term("at")(inputs, cfg)), rel=1e-4)
    expected = float(parts["ce"]) + 0.1 * float(parts["fm"]) + 10.0 * float(parts["at"])
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_label_free_distillation_with_kd_and_feature_map_loss(nets, student):
    teacher, _ = nets
    model = Distiller(teacher, student, LossConfig(ce=0.0, fm=0.0, at=0.0, kd=1.0, fmap=1.0), labeled=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, _ = batch(3, 16)
    s0 = weights(student)
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(B).repeat(), shuffle=False,
                        steps_per_epoch=2, epochs=1, verbose=0).history
    assert set(history) == {"loss", "kd", "fmap", "agreement"}
    assert all(np.isfinite(v[0]) for v in history.values())
    assert not np.array_equal(s0[0], student.weights[0].numpy())


def test_term_needing_labels_on_unlabeled_data_is_refused(nets):
    teacher, student = nets
    with pytest.raises(ConfigError, match=r"loss\.ce=1.*needs labels"):
        Distiller(teacher, student, LossConfig(ce=1.0, fm=0.1, at=0.0), labeled=False)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # FM + AT+ never reach the logits' bias
def test_a_batch_without_labels_trains_with_the_label_free_terms(nets, student):
    teacher, _ = nets
    cfg = LossConfig(ce=1.0, fm=0.1, at=10.0)
    model = Distiller(teacher, student, cfg)
    model.compile(optimizer=keras.optimizers.SGD(1e-2))
    x, y = batch(4)
    _, _, loss, parts, _, _ = model.forward_losses(x)  # no labels: CE is left out of the step
    assert set(parts) == {"fm", "at"}
    assert float(loss) == pytest.approx(0.1 * float(parts["fm"]) + 10.0 * float(parts["at"]), rel=1e-6)
    s0 = weights(student)
    logs = model.train_step(x)
    assert {"loss", "fm", "at", "agreement"} <= set(logs) and "accuracy" not in logs
    assert not np.array_equal(s0[0], student.weights[0].numpy())
    assert "accuracy" in model.train_step((x, y))  # the next labelled batch uses its labels again
    ce_only = Distiller(teacher, student, LossConfig(ce=1.0, fm=0.0, at=0.0))
    ce_only.compile(optimizer=keras.optimizers.SGD(0.0))
    with pytest.raises(ValueError, match=r"no labels and every configured term \['ce'\] needs them"):
        ce_only.train_step(x)


def test_target_class_maps_use_labels_else_the_teacher_prediction(nets):
    teacher, student = nets
    model = Distiller(Supervised(teacher), student, LossConfig(at_classes="target"))
    assert model.teacher is teacher
    x, _ = batch(5)
    predicted = teacher(x["hr"])["logits"].numpy().argmax(1)
    labels = ((predicted + 1) % C).astype(np.int32)  # differs from the prediction everywhere

    out = model.maps(x, tf.constant(labels))
    assert out["teacher"].shape == (B, 4, 4, 1) and out["student"].shape == (B, 4, 4, 1)
    np.testing.assert_array_equal(out["target"], labels)
    _, expected = attention_maps(teacher, x["hr"], classes=labels, second_order=False)
    np.testing.assert_allclose(out["teacher"], expected, rtol=1e-5, atol=1e-6)
    _, expected_s = attention_maps(student, x["lr"], classes=labels, second_order=False)
    np.testing.assert_allclose(out["student"], expected_s, rtol=1e-5, atol=1e-6)

    out = model.maps(x)  # no labels: the teacher's predicted class
    np.testing.assert_array_equal(out["target"], predicted)
    _, expected = attention_maps(teacher, x["hr"], classes=predicted, second_order=False)
    np.testing.assert_allclose(out["teacher"], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out["teacher"], model.maps(x, tf.constant(labels))["teacher"])

    all_maps = Distiller(teacher, student, LossConfig(at_classes="all")).maps(x, tf.constant(labels))
    assert all_maps["teacher"].shape == (B, 4, 4, C) and all_maps["student"].shape == (B, 4, 4, C)


def test_test_step_scores_the_student_alone(nets):
    teacher, student = nets
    model = Distiller(teacher, student, LossConfig(ce=1.0, fm=0.1, at=10.0))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = batch(6, 16)
    scores = model.evaluate(tf.data.Dataset.from_tensor_slices((x, y)).batch(B), return_dict=True, verbose=0)
    assert set(scores) == {"loss", "ce", "accuracy"}
    logits = student(x["lr"])["logits"].numpy()
    assert scores["ce"] == pytest.approx(np_cross_entropy(y, logits), rel=1e-4)
    assert scores["loss"] == pytest.approx(scores["ce"])
    assert scores["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))
    np.testing.assert_allclose(model(x)["logits"], logits, atol=1e-6)
