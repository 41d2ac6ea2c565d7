"""Data layer: readers, the synthetic H&E benchmark, augmentation and the multi-resolution tf.data
pipeline. Knows nothing of models."""

from ird_tf.errors import DataError

__all__ = ["DataError"]
