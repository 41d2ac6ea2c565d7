"""Native-student backbones <vgg>_keep<k>: the VGG without its first k max-pools.

Feature grid per factor, weights by layer name (a saved file of Keras' VGG16 layout), FLOPs by hand,
run identity, and a Distiller step whose teacher and student grids match (no resizing).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ird_tf.config import BACKBONE_REVISIONS, NATIVE_BACKBONES, ConfigError, ExperimentConfig, LossConfig
from ird_tf.data.view import InputView
from ird_tf.evaluation.cost import count_macs, flops_per_image
from ird_tf.models import build_classifier, get_backbone
from ird_tf.runs.classifiers import build_for
from ird_tf.runs.identity import student_dir
from ird_tf.training import Distiller


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 3)).astype("float32")


def grid(model: keras.Model, size: int) -> tuple[int, int]:
    return tuple(model(images(1, size))["features"].shape[1:3])


@pytest.mark.parametrize(("k", "size", "expected"), [(1, 64, 16), (2, 32, 16), (3, 16, 16), (3, 8, 8),
                                                     (1, 16, 4), (2, 16, 8)])
def test_vgg_tiny_keep_grid_per_factor(k, size, expected):
    """A 128 px teacher (vgg_tiny) has a 16x16 grid; at 5x / 2.5x / 1.25x (64 / 32 / 16 px) keep1 /
    keep2 / keep3 give the same 16x16 grid; smaller k a coarser one (each kept pool doubles the side)."""
    teacher = build_classifier("vgg_tiny", 4)
    assert grid(teacher, 128) == (16, 16)
    model = build_classifier(f"vgg_tiny_keep{k}", 4)
    assert grid(model, size) == (expected, expected)
    assert model.get_layer("features").output.shape[-1] == 64
    assert sum(1 for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)) == 4 - k


def test_vgg16_keep4_at_0625x_has_teachers_grid():
    assert grid(build_classifier("vgg16", 4), 64) == (4, 4)
    assert grid(build_classifier("vgg16_keep4", 4), 4) == (4, 4)  # 16x smaller input, same grid


def test_same_layer_names_and_weight_shapes_as_the_base():
    for base, k in (("vgg_tiny", 3), ("vgg16", 2)):
        a, b = build_classifier(base, 4), build_classifier(f"{base}_keep{k}", 4)
        wa = {layer.name: [w.shape for w in layer.weights] for layer in a.layers if layer.weights}
        wb = {layer.name: [w.shape for w in layer.weights] for layer in b.layers if layer.weights}
        assert wa == wb
    assert get_backbone("vgg16_keep3").reference is not None
    assert get_backbone("vgg_tiny_keep3").reference is None


def test_vgg16_keep_loads_keras_notop_h5_by_name(vgg16_notop):
    """A Keras VGG16 notop weights file copies into vgg16_keep2 by layer name: every convolution's
    kernel and bias, and the first stage (no pool removed before it) computes Keras' activations."""
    reference, path = vgg16_notop
    model = build_classifier("vgg16_keep2", 4, weights=str(path))
    for layer in reference.layers:
        if isinstance(layer, keras.layers.Conv2D):
            for ours, theirs in zip(model.get_layer(layer.name).weights, layer.weights, strict=True):
                np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # the first stage has no pool removed before it: block1_conv2 equals Keras' on the same pixels
    x = images(1, 8)
    ours = keras.Model(model.input, model.get_layer("block1_conv2_relu").output)(x).numpy()
    theirs = keras.Model(reference.input, reference.get_layer("block1_conv2").output)(
        keras.applications.vgg16.preprocess_input(x * 255.0)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3)


def test_flops_by_hand_vgg_tiny_keep3_at_16px():
    """keep3: every convolution runs on the 16x16 input grid."""
    convs = [(3, 8), (8, 8), (8, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64)]
    expected = 16 * 16 * 9 * sum(a * b for a, b in convs) + 64 * 4
    assert sum(count_macs(build_classifier("vgg_tiny_keep3", 4), 16).values()) == expected
    # keep1: stages 1-2 at 16x16, stage 3 at 8x8, stage 4 at 4x4
    by_stage = [3 * 8 + 8 * 8, 8 * 16 + 16 * 16, 16 * 32 + 32 * 32, 32 * 64 + 64 * 64]
    expected1 = 9 * (256 * (by_stage[0] + by_stage[1]) + 64 * by_stage[2] + 16 * by_stage[3]) + 64 * 4
    assert sum(count_macs(build_classifier("vgg_tiny_keep1", 4), 16).values()) == expected1


def test_run_identity_and_config():
    assert set(NATIVE_BACKBONES) <= set(BACKBONE_REVISIONS)
    base = ExperimentConfig()
    base.data.student_mag, base.data.mode = 1.25, "native"
    native = ExperimentConfig.from_dict(base.to_dict())
    native.model.student_backbone = "vgg_tiny_keep3"
    assert student_dir(base) != student_dir(native)
    assert "vgg_tiny_keep3" in student_dir(native).name
    assert "student_backbone" not in str(student_dir(base))
    with pytest.raises(ConfigError, match="student_backbone"):
        ExperimentConfig.from_dict({**base.to_dict(), "model": {"student_backbone": "vgg19"}}).validate()
    teacher = build_for(native, InputView.teacher(native.data), 4, None)
    student = build_for(native, InputView.student(native.data), 4, None)
    assert teacher.get_layer("block1_pool") is not None
    assert "block1_pool" not in [layer.name for layer in student.layers]
    size = InputView.student(native.data).size
    assert grid(student, size) == grid(teacher, InputView.teacher(native.data).size)


def test_distiller_step_with_matching_grids():
    """FM and AT+ between a 32 px teacher and an 8 px keep2 student (4x4 grids both: no resizing)."""
    keras.utils.set_random_seed(3)
    teacher = build_classifier("vgg_tiny", 4, (32, 32, 3), name="t")
    student = build_classifier("vgg_tiny_keep2", 4, (8, 8, 3), name="s")
    assert teacher.output["features"].shape[1:3] == student.output["features"].shape[1:3] == (4, 4)
    model = Distiller(teacher, student, LossConfig(ce=1.0, fm=0.1, at=10.0))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    hr = images(8, 32)
    lr = tf.nn.avg_pool2d(hr, 4, 4, "VALID").numpy()
    y = np.arange(8, dtype=np.int32) % 4
    before = [v.numpy().copy() for v in student.trainable_weights]
    history = model.fit(tf.data.Dataset.from_tensor_slices(({"hr": hr, "lr": lr}, y)).batch(4), epochs=1,
                        shuffle=False, verbose=0).history
    assert {"fm", "at", "ce"} <= set(history) and all(np.isfinite(v[0]) for v in history.values())
    assert history["fm"][0] > 0 and history["at"][0] > 0
    after = student.trainable_weights
    assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, after, strict=True))


@pytest.mark.parametrize(("k", "p"), [(3, 50), (2, 75), (1, 50)])
def test_narrow_keep_grid_students_flops_by_hand(k, p):
    """vgg_tiny_keep<k>_w<p>: every stage p % as wide, the grid of keep<k>; MACs worked by hand."""
    widths = [8 * p // 100, 16 * p // 100, 32 * p // 100, 64 * p // 100]
    model = build_classifier(f"vgg_tiny_keep{k}_w{p}", 4)
    assert grid(model, 16) == grid(build_classifier(f"vgg_tiny_keep{k}", 4), 16)
    assert model.get_layer("features").output.shape[-1] == widths[-1]
    cins = [3, *widths[:-1]]
    per_stage = [9 * (c * w + w * w) for c, w in zip(cins, widths, strict=True)]
    sides = [16, 16, 16, 16]  # a stage's side at 16 px: halved after each pool that is kept
    for s in range(1, 4):
        sides[s] = sides[s - 1] // (2 if s + 1 > 1 + k else 1)
    expected = sum(side * side * m for side, m in zip(sides, per_stage, strict=True)) + widths[-1] * 4
    assert sum(count_macs(model, 16).values()) == expected


def test_feature_terms_need_the_teachers_width():
    cfg = ExperimentConfig()
    cfg.data.student_mag, cfg.data.mode = 1.25, "native"
    cfg.model.student_backbone = "vgg_tiny_keep3_w50"
    with pytest.raises(ConfigError, match=r"loss \['fm'\].*vgg_tiny_keep3_w50.*50 % as wide.*loss.fm=0"):
        cfg.validate()
    cfg.loss.fm = 0.0
    assert cfg.validate() is cfg  # AT+ (maps) and CE need no matching channels


@pytest.mark.parametrize("k", [3, 1])
def test_separable_keep_grid_students_flops_by_hand(k):
    """vgg_tiny_keep<k>_sep: full width, every convolution after the first depthwise-separable
    (3x3 per input channel, then 1x1 across): MACs worked by hand; the grid and the tap's width are
    keep<k>'s, so FM and AT+ read it as they read keep<k>."""
    model = build_classifier(f"vgg_tiny_keep{k}_sep", 4)
    plain = build_classifier(f"vgg_tiny_keep{k}", 4)
    assert grid(model, 16) == grid(plain, 16)
    assert model.get_layer("features").output.shape[-1] == 64
    assert isinstance(model.get_layer("block1_conv1"), keras.layers.Conv2D)
    assert isinstance(model.get_layer("block4_conv2"), keras.layers.SeparableConv2D)
    convs = [[(3, 8), (8, 8)], [(8, 16), (16, 16)], [(16, 32), (32, 32)], [(32, 64), (64, 64)]]
    sides = [16, 16, 16, 16]
    for s in range(1, 4):
        sides[s] = sides[s - 1] // (2 if s + 1 > 1 + k else 1)
    expected = 64 * 4
    for s, (side, stage) in enumerate(zip(sides, convs, strict=True)):
        for c, (cin, cout) in enumerate(stage):
            per_position = 9 * cin * cout if (s, c) == (0, 0) else 9 * cin + cin * cout
            expected += side * side * per_position
    assert sum(count_macs(model, 16).values()) == expected
    assert 2 * expected < flops_per_image(plain, 16) / 5
