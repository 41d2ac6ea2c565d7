"""The Teacher: a classifier that trains itself with cross-entropy in a custom ``train_step``.

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

INPUT_KEYS = ("hr", "lr")


def unpack(data) -> tuple:
    """``(x, labels)`` of a batch that is ``x`` alone or ``(x, labels[, ...])``; labels may be None."""
    if isinstance(data, tuple | list):
        return data[0], (data[1] if len(data) > 1 else None)
    return data, None


def replica_share(loss: tf.Tensor) -> tf.Tensor:
    """Divides a per-replica mean loss by the number of replicas: under a strategy the optimizer sums
    the replicas' gradients, so the sum is then the gradient of the global-batch mean."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss / tf.cast(replicas, loss.dtype) if replicas > 1 else loss


def step_logs(logs: dict) -> dict:
    """What a step returns. Under MultiWorkerMirroredStrategy Keras 3 reduces the step logs over
    replicas with ``axis=0``, which fails on scalars (tensorflow/tensorflow#72388): there the values get
    shape [1] (the reduction gives back the scalar mean over replicas)."""
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs


def batch_size(t: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.shape(t)[0], tf.float32)


def regularization(model: keras.Model) -> tf.Tensor:
    """Sum of the model's own regularisation losses (0 when it has none), in float32."""
    return tf.add_n([tf.constant(0.0)] + [tf.cast(v, tf.float32) for v in model.losses])


def float32_outputs(outputs: dict) -> dict:
    """Casts the classifier's outputs to float32 so every loss is computed in float32 (the features of a
    mixed-precision model are float16/bfloat16)."""
    return {k: tf.cast(v, tf.float32) for k, v in outputs.items()}


class Wrapper(keras.Model):
    """Base of the training wrappers: built at construction (the wrapped classifiers are), with our own
    trackers instead of compiled losses and metrics."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras's version first reduces a sample batch across replicas, which fails for dict inputs under
        # MultiWorkerMirroredStrategy (keras-team/keras#20329). A wrapper needs no data to finish
        # building: only the optimizer's variables, created here in the strategy's scope.
        with self.distribute_strategy.scope():
            self._symbolic_build()


class Teacher(Wrapper):
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
                f"Teacher input_key={input_key!r} is not accepted; expected one of {INPUT_KEYS}"
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

    def call(self, x, training=False):
        images = x[self.input_key] if isinstance(x, dict) else x
        return self.classifier(images, training=training)

    def _labels(self, labels):
        if labels is None:
            raise ValueError(
                "Teacher trains and scores on labelled batches (x, label); this batch has no labels "
                "(use make_dataset(..., labeled=True))"
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


__all__ = ["Teacher", "Wrapper", "step_logs", "unpack", "replica_share", "float32_outputs"]
