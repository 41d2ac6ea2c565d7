"""Supervised: the custom train step against a hand-computed SGD step; logs; inputs; optimizers."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ird_tf.config import ConfigError, OptimConfig
from ird_tf.models import build_classifier
from ird_tf.training import Supervised, make_optimizer

S, B, C = 32, 8, 4


def batch(seed=0, n=B):
    rng = np.random.default_rng(seed)
    x = {"hr": rng.random((n, S, S, 3), dtype=np.float32), "lr": rng.random((n, S, S, 3), dtype=np.float32)}
    return x, rng.integers(0, C, n).astype(np.int32)


def np_cross_entropy(labels, logits):
    logits = np.asarray(logits, np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels].mean()


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(1)
    return build_classifier("vgg_tiny", C, (S, S, 3), name="teacher_net")


def test_train_step_is_one_sgd_step_on_cross_entropy_of_hr(classifier):
    model = Supervised(classifier)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, y = batch(0)
    before = [v.numpy().copy() for v in classifier.trainable_variables]
    with tf.GradientTape() as tape:
        logits = classifier(x["hr"], training=True)["logits"]
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, classifier.trainable_variables)
    expected_ce = np_cross_entropy(y, logits.numpy())

    logs = model.train_on_batch(x, y, return_dict=True)

    assert set(logs) == {"loss", "ce", "accuracy"}
    assert logs["ce"] == pytest.approx(expected_ce, rel=1e-5)
    assert logs["loss"] == pytest.approx(expected_ce, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(np.mean(logits.numpy().argmax(1) == y))
    for w0, g, v in zip(before, grads, classifier.trainable_variables, strict=True):
        np.testing.assert_allclose(v.numpy(), w0 - 0.1 * g.numpy(), atol=1e-6)


def test_fit_and_evaluate_report_loss_ce_accuracy(classifier):
    model = Supervised(classifier)
    model.compile(optimizer=make_optimizer(OptimConfig(learning_rate=1e-3)))
    x, y = batch(1, 16)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(B)
    history = model.fit(ds.repeat(), shuffle=False, steps_per_epoch=2, epochs=1, verbose=0).history
    assert set(history) == {"loss", "ce", "accuracy"}
    assert np.isfinite(history["loss"][0])

    scores = model.evaluate(ds, return_dict=True, verbose=0)
    logits = classifier.predict(x["hr"], verbose=0)["logits"]
    assert scores["ce"] == pytest.approx(np_cross_entropy(y, logits), rel=1e-4)
    assert scores["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == y))


def test_input_key_selects_the_view(classifier):
    x, _ = batch(2)
    lr_model = Supervised(classifier, input_key="lr")
    np.testing.assert_allclose(lr_model(x)["logits"], classifier(x["lr"])["logits"], atol=1e-6)
    assert not np.allclose(lr_model(x)["logits"], classifier(x["hr"])["logits"], atol=1e-4)
    np.testing.assert_allclose(Supervised(classifier)(x)["logits"], classifier(x["hr"])["logits"], atol=1e-6)
    with pytest.raises(ConfigError, match="input_key='mid'"):
        Supervised(classifier, input_key="mid")


def test_batch_without_labels_is_an_error(classifier):
    model = Supervised(classifier)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, _ = batch(3)
    with pytest.raises(ValueError, match="no labels"):
        model.train_step(x)


def test_make_optimizer():
    adam = make_optimizer(OptimConfig(name="adam", learning_rate=3e-4))
    assert isinstance(adam, keras.optimizers.Adam) and float(adam.learning_rate) == pytest.approx(3e-4)
    adamw = make_optimizer(OptimConfig(name="adamw", learning_rate=1e-3, weight_decay=0.01))
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == pytest.approx(0.01)
    sgd = make_optimizer(OptimConfig(name="sgd", learning_rate=0.1))
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == pytest.approx(0.9)
    with pytest.raises(ConfigError, match=r"optim\.name='rmsprop'"):
        make_optimizer(OptimConfig(name="rmsprop"))
