"""set_seed: every seed Keras's ``set_random_seed`` sets, with TensorFlow's kernel cache kept."""

import random

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager import context

from ird_tf.training.runtime import set_seed


def draws():
    """What a run draws from the global seeds: Python, NumPy, a Keras initializer (its seed from
    Python's generator), Keras's global generator, TensorFlow's global seed and a seeded shuffle."""
    return {
        "python": random.random(),
        "numpy": np.random.rand(3).tolist(),
        "initializer": keras.initializers.GlorotUniform()((3, 3)).numpy().tolist(),
        "keras_global": keras.random.uniform((3,)).numpy().tolist(),
        "tf_global_seed": context.global_seed(),
        "shuffle": [int(x) for x in tf.data.Dataset.range(12).shuffle(12, seed=3)],
    }


@pytest.mark.parametrize("seed", [3, 22])
def test_set_seed_sets_what_keras_sets(seed):
    keras.utils.set_random_seed(seed)
    expected = draws()
    keras.utils.set_random_seed(seed + 1)
    draws()  # every seed moved in between
    set_seed(seed)
    assert draws() == expected


def test_set_seed_keeps_the_kernel_cache():
    """A stateful random kernel continues its sequence after ``set_seed`` (its kernel, like every
    instantiated function, stays cached); after Keras's call it starts again."""
    keras.utils.set_random_seed(5)
    first = tf.random.uniform([2], seed=1).numpy()
    second = tf.random.uniform([2], seed=1).numpy()
    keras.utils.set_random_seed(5)
    np.testing.assert_array_equal(tf.random.uniform([2], seed=1).numpy(), first)  # cache cleared
    set_seed(5)
    assert not np.array_equal(tf.random.uniform([2], seed=1).numpy(), first)  # kernel kept: continues
    assert not np.array_equal(second, first)
