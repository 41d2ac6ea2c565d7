"""What the custom train steps of ``Supervised`` and ``Distiller`` share: batch unpacking, the loss share
of a replica, step logs that survive multi-worker reduction, float32 outputs, and the wrapper base
that builds without data.
"""

from __future__ import annotations

import keras
import tensorflow as tf


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


__all__ = [
    "Wrapper", "batch_size", "float32_outputs", "regularization", "replica_share", "step_logs", "unpack",
]
