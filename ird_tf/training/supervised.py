"""Supervised: a classifier that trains itself with cross-entropy on one input view, in a custom
``train_step``: the Teacher at high magnification, and the Student that learns alone (no distillation).

Keras 3 recipe (guide "Customizing what happens in fit() with TensorFlow"): the loss is scaled with
``self.optimizer.scale_loss`` inside the tape (a ``LossScaleOptimizer`` under ``mixed_float16``, which
``compile`` wraps automatically because the wrapper takes the classifier's dtype policy; a no-op
otherwise), ``self.optimizer.apply`` unscales the gradients, and the metrics are our own trackers listed
in ``metrics`` so ``fit`` resets them each epoch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from ird_tf.config import ConfigError
from ird_tf.losses import cross_entropy
from ird_tf.training.steps import (
    Wrapper,
    batch_size,
    float32_outputs,
    regularization,
    replica_share,
    step_logs,
    unpack,
)

INPUT_KEYS = ("hr", "lr")


class Supervised(Wrapper):
    """Wraps a classifier (``build_classifier``) and trains it on ``x[input_key]`` with cross-entropy.

    ``input_key="hr"`` is the usual high-magnification teacher; ``"lr"`` trains the same network alone on
    the low-magnification view (the "student without distillation" baseline). ``call`` returns the
    classifier's outputs ``{"logits", "features"}``; ``classifier`` is what checkpoints save.
    """

    def __init__(self, classifier: keras.Model, *, input_key: str = "hr", label_smoothing: float = 0.0,
                 name: str = "teacher_trainer", **kwargs):
        super().__init__(name=name, dtype=classifier.dtype_policy, **kwargs)
        if input_key not in INPUT_KEYS:
            raise ConfigError(
                f"Supervised input_key={input_key!r} is not accepted; expected one of {INPUT_KEYS}"
            )
        self.classifier = classifier
        self.input_key = input_key
        self.label_smoothing = float(label_smoothing)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ce_tracker = keras.metrics.Mean(name="ce")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.ce_tracker, self.accuracy_tracker]

    @property
    def term_weights(self) -> dict[str, float]:
        """The loss terms and their weights: cross-entropy alone."""
        return {"ce": 1.0}

    def call(self, x, training=False):
        images = x[self.input_key] if isinstance(x, dict) else x
        return self.classifier(images, training=training)

    def _labels(self, labels):
        if labels is None:
            raise ValueError(
                "Supervised trains and scores on labelled batches (x, label); this batch has no labels "
                "(use training_dataset(..., labeled=True))"
            )
        return tf.cast(labels, tf.int32)

    def train_step(self, data):
        x, labels = unpack(data)
        labels = self._labels(labels)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            logits = tf.cast(self(x, training=True)["logits"], tf.float32)
            ce = cross_entropy(labels, logits, label_smoothing=self.label_smoothing)
            loss = ce + regularization(self.classifier)
            scaled = self.optimizer.scale_loss(replica_share(loss))
        grads = tape.gradient(scaled, variables)
        self.optimizer.apply(grads, variables)
        return self._update(loss, ce, labels, logits)

    def test_step(self, data):
        x, labels = unpack(data)
        labels = self._labels(labels)
        logits = tf.cast(self(x, training=False)["logits"], tf.float32)
        ce = cross_entropy(labels, logits)
        return self._update(ce, ce, labels, logits)

    def _update(self, loss, ce, labels, logits) -> dict:
        n = batch_size(logits)
        self.loss_tracker.update_state(loss, sample_weight=n)
        self.ce_tracker.update_state(ce, sample_weight=n)
        self.accuracy_tracker.update_state(labels, logits)
        return step_logs({m.name: m.result() for m in self.metrics})


__all__ = ["Supervised", "Wrapper", "step_logs", "unpack", "replica_share", "float32_outputs"]
