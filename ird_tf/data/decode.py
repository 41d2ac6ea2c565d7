"""Decoding image files to uint8 RGB at the pipeline's size, inside tf.data: TensorFlow's decoders for
the formats it knows, PIL for the rest (TIFF, WebP...). The checks (:mod:`ird_tf.data.checks`) ran
first, so every file here decodes."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from PIL import Image


def decoder(size: int, *, any_pil: bool, resize: bool):
    """(path, label, use_pil) → (uint8[S, S, 3], label). Mode checks were done by check_images."""

    def tf_decode(path):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.uint8, expand_animations=False)
        img.set_shape([None, None, 3])
        return img

    def pil_decode(path):
        img = tf.numpy_function(_read_pil, [path], tf.uint8, stateful=False)
        img.set_shape([None, None, 3])
        return img

    def to_size(img):
        resized = tf.image.resize(img, [size, size], method="area")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    def decode(path, label, use_pil):
        img = (
            tf.cond(use_pil, lambda: pil_decode(path), lambda: tf_decode(path))
            if any_pil
            else tf_decode(path)
        )
        if resize:
            same = tf.reduce_all(tf.shape(img)[:2] == size)
            img = tf.cond(same, lambda: img, lambda: to_size(img))
        return tf.ensure_shape(img, [size, size, 3]), label

    return decode


def _read_pil(path: bytes) -> np.ndarray:
    with Image.open(path.decode()) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


__all__ = ["decoder"]
