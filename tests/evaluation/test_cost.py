"""FLOPs and images/s of a classifier: by hand, by the TF profiler, as a rate."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from ird_tf.evaluation.cost import count_macs, flops_per_image, images_per_second
from ird_tf.models import build_classifier
from ird_tf.models.backbones import VGG_TINY_STAGES


def test_count_macs_by_hand():
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, padding="same", name="c1")(x)  # 8x8x4, kernel 3x3x3
    y = keras.layers.Conv2D(6, 3, strides=2, groups=2, name="c2")(y)  # valid: 3x3x6, 2 in-ch per group
    y = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(y)  # 3x3x12
    y = keras.layers.SeparableConv2D(5, 1, name="sep")(y)  # 3x3: depthwise 12, pointwise 12 -> 5
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(7, name="fc")(y)
    model = keras.Model(x, y)
    expected = {
        "c1": 8 * 8 * 4 * 3 * 3 * 3,
        "c2": 3 * 3 * 6 * 3 * 3 * 2,
        "dw": 3 * 3 * 12 * 3 * 3,
        "sep": 3 * 3 * (12 * 1 * 1 + 12 * 5),
        "fc": 5 * 7,
    }
    assert count_macs(model) == expected
    assert flops_per_image(model) == 2 * sum(expected.values())


def test_vgg_tiny_flops_by_hand_and_by_tf_profiler():
    """Hand count of VGG-tiny (3x3 'same' convs, a 2x2 pool between stages) at 128 px, any input size."""
    size, macs, c_in = 128, 0, 3
    for s, (width, convs) in enumerate(VGG_TINY_STAGES):
        side = size // 2**s
        for _ in range(convs):
            macs += side * side * width * 9 * c_in
            c_in = width
    macs += c_in * 4  # Dense head
    variable = build_classifier("vgg_tiny", 4, (None, None, 3))
    fixed = build_classifier("vgg_tiny", 4, (size, size, 3))
    assert flops_per_image(variable, size) == flops_per_image(fixed) == 2 * macs
    with pytest.raises(ValueError, match="input_size"):
        flops_per_image(variable)

    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda t: fixed(t, training=False)["logits"])
    concrete = fn.get_concrete_function(tf.TensorSpec([1, size, size, 3]))
    graph = convert_variables_to_constants_v2(concrete).graph
    options = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), "output": "none"}
    profiled = tf.compat.v1.profiler.profile(graph=graph, cmd="op", options=options).total_float_ops
    # the profiler also counts bias adds, ReLUs, pools and the input scaling: a little more, never less
    assert 2 * macs <= profiled <= 1.02 * 2 * macs


def test_images_per_second_is_a_rate():
    model = build_classifier("vgg_tiny", 4, (16, 16, 3))
    rate = images_per_second(model, 16, batch_size=8, min_seconds=0.05, min_batches=3)
    assert np.isfinite(rate) and rate > 0
