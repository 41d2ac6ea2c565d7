"""The helpers the Teacher's and Distiller's train steps share."""

import keras
import numpy as np
import tensorflow as tf

from ird_tf.training.steps import (
    batch_size,
    float32_outputs,
    regularization,
    replica_share,
    step_logs,
    unpack,
)


def test_unpack_batches_with_and_without_labels():
    x = {"hr": np.zeros((2, 4, 4, 3))}
    assert unpack(x) == (x, None)
    assert unpack((x,)) == (x, None)
    labels = np.array([1, 0])
    got_x, got_y = unpack((x, labels, np.ones(2)))  # a sample-weight column is ignored
    assert got_x is x and got_y is labels


def test_losses_and_outputs_in_float32():
    dense = keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L2(0.5))
    model = keras.Sequential([keras.Input((3,)), dense])
    dense.kernel.assign(np.full((3, 2), 2.0, np.float32))
    model(np.zeros((1, 3), np.float32))
    assert float(regularization(model)) == 0.5 * 4.0 * 6  # 0.5 * sum(w^2)
    assert float(regularization(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))) == 0.0
    out = float32_outputs({"logits": tf.constant([[1.5]], tf.float16),
                           "features": tf.zeros((1, 2), tf.bfloat16)})
    assert {v.dtype for v in out.values()} == {tf.float32}
    assert float(batch_size(tf.zeros((5, 3)))) == 5.0


def test_single_replica_keeps_loss_and_logs():
    loss = tf.constant(3.0)
    assert float(replica_share(loss)) == 3.0  # one replica: the global mean is the replica's
    logs = {"loss": loss}
    assert step_logs(logs) is logs
