"""Localisation of a classifier on a split (against tf-keras-vis Grad-CAM), its cache, and inference cost
(against hand-counted multiply-adds and TensorFlow's own profiler)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from ird_tf.errors import DataError
from ird_tf.evaluation.attention_eval import (
    cached_localisation,
    count_macs,
    flops_per_image,
    images_per_second,
    localisation_on_split,
    read_localisation,
)
from ird_tf.evaluation.localisation import load_masks, localisation_scores
from ird_tf.models import build_classifier, logits_model
from ird_tf.models.backbones import VGG_TINY_STAGES


def tiny_split(tmp_path, n=10, size=32):
    """Noise images; masks with a lesion (grade 3 or 4) in one quadrant, NC rows all benign, one row
    without a mask file (must be left out)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(img)
        label = i % 4
        mask = np.zeros((size, size), np.uint8)
        if label:
            r, c = divmod(i % 4, 2)
            mask[r * size // 2:(r + 1) * size // 2, c * size // 2:(c + 1) * size // 2] = 2 + label
            mask[:2, :] = 255
        path = tmp_path / f"p{i}_mask.png"
        Image.fromarray(mask).save(path)
        rows.append({"path": str(img), "label": label, "mask": None if i == n - 1 else str(path)})
    return pd.DataFrame(rows)


def gradcam_oracle(model, images, labels):
    """Raw Grad-CAM maps on the feature grid from tf-keras-vis (not our attention code)."""
    cam = Gradcam(logits_model(model), model_modifier=ReplaceToLinear(), clone=True)
    return cam(CategoricalScore(list(labels)), images, penultimate_layer="features",
               seek_penultimate_conv_layer=False, normalize_cam=False, expand_cam=False)


@pytest.mark.parametrize("factor, mode", [(1, "upsampled"), (2, "native")])
def test_localisation_matches_tf_keras_vis(tmp_path, factor, mode):
    keras.utils.set_random_seed(1)
    table = tiny_split(tmp_path)
    size = 32 // factor if mode == "native" else 32
    model = build_classifier("vgg_tiny", 4, (size, size, 3))
    key = "hr" if factor == 1 else "lr"
    scores = localisation_on_split(model, table, image_size=32, factor=factor, mode=mode, input_key=key,
                                   weighting="gradcam", batch_size=4)

    kept = table[table["mask"].notna()]
    images = np.stack([np.asarray(Image.open(p), np.float32) / 255.0 for p in kept["path"]])
    if factor > 1:
        images = tf.nn.avg_pool2d(images, factor, factor, "VALID").numpy()
    maps = np.asarray(gradcam_oracle(model, images, kept["label"].to_numpy()))
    expected = localisation_scores(maps, load_masks(kept["mask"].tolist(), 32))
    assert scores["n"] == expected["n"] == int((kept["label"] > 0).sum())  # NC rows have no lesion
    for k in ("energy_inside", "pointing_game"):
        assert 0.0 <= scores[k] <= 1.0
        np.testing.assert_allclose(scores[k], expected[k], rtol=1e-4, atol=1e-6)


def test_localisation_needs_masks(tmp_path):
    table = tiny_split(tmp_path, n=3).assign(mask=None)
    with pytest.raises(DataError, match="mask"):
        localisation_on_split(build_classifier("vgg_tiny", 4, (32, 32, 3)), table, image_size=32)


def test_cached_localisation_computes_once_per_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"energy_inside": 0.4, "pointing_game": float("nan"), "n": 0, "n_zero_energy": 0}

    key = {"split": "test", "weighting": "gradcam"}
    first, cached = cached_localisation(tmp_path, compute, key=key)
    assert not cached and len(calls) == 1 and first["energy_inside"] == 0.4
    on_disk = json.loads((tmp_path / "localisation.json").read_text())
    assert on_disk["key"] == key and on_disk["scores"]["pointing_game"] is None  # strict JSON
    again, cached = cached_localisation(tmp_path, compute, key=key)
    assert cached and len(calls) == 1
    assert again["energy_inside"] == 0.4 and np.isnan(again["pointing_game"])
    assert read_localisation(tmp_path, {**key, "weighting": "positive"}) is None
    _, cached = cached_localisation(tmp_path, compute, key={**key, "weighting": "positive"})
    assert not cached and len(calls) == 2


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
