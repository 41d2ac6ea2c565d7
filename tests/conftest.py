"""Test-wide settings: Keras and Matplotlib caches in a temp dir (never the user's home), quiet
TensorFlow. Tests that need a seed set their own."""

import os
import tempfile

_CACHE = os.path.join(tempfile.gettempdir(), "ird_tf_test_cache")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_HOME"] = os.path.join(_CACHE, "keras")
os.environ["MPLCONFIGDIR"] = os.path.join(_CACHE, "matplotlib")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
