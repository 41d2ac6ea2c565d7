"""Test-wide settings: caches inside a temp dir, quiet TensorFlow, deterministic seeds."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_HOME", os.path.join(tempfile.gettempdir(), "ird_tf_test_keras_home"))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
