"""One compiled function per (model, purpose), kept on the model and collected with it."""

import gc
import weakref

import keras

from ird_tf.models.traced import traced


def test_the_same_function_per_model_and_key_and_collected_with_the_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    made = []

    def make():
        made.append(object())
        return made[-1]

    assert traced(model, "a", make) is traced(model, "a", make)
    assert traced(model, "b", make) is not traced(model, "a", make)
    assert len(made) == 2
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert traced(other, "a", make) is not traced(model, "a", make)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None
