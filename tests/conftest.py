"""Test-wide settings: Keras and Matplotlib caches in a temp dir (never the user's home), quiet
TensorFlow. Tests that need a seed set their own."""

import os
import tempfile

import pytest

_CACHE = os.path.join(tempfile.gettempdir(), "ird_tf_test_cache")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_HOME"] = os.path.join(_CACHE, "keras")
os.environ["MPLCONFIGDIR"] = os.path.join(_CACHE, "matplotlib")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture
def float64():
    """Keras in float64 for the test (gradient checks), restored afterwards."""
    import keras

    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


@pytest.fixture
def central_difference():
    """``(variable, index, loss_fn, eps) -> (loss(v + eps) - loss(v - eps)) / 2 eps`` at one entry; the
    variable is restored."""

    def numeric(variable, index, loss_fn, eps: float = 1e-6) -> float:
        base = variable.numpy()
        values = []
        for sign in (1, -1):
            bumped = base.copy()
            bumped[index] += sign * eps
            variable.assign(bumped)
            values.append(float(loss_fn()))
        variable.assign(base)
        return (values[0] - values[1]) / (2 * eps)

    return numeric
