"""build_classifier: outputs, flatness, any input size, mixed precision, saving and weight sources."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import file_utils
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore, InactiveScore

from ird_tf.config import ConfigError
from ird_tf.models import WeightsError, build_classifier, logits_model


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def tiny() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_classifier("vgg_tiny", 4)


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def check_structure(model: keras.Model) -> None:
    assert len(model.inputs) == 1 and model.get_layer("image").output is model.inputs[0]
    assert not [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    assert model.get_layer("logits").dtype == "float32"
    tap = keras.Model(model.inputs, model.get_layer("features").output)
    assert tap.output.shape[-1] == model.output["features"].shape[-1]


@pytest.mark.parametrize(("size", "grid"), [(128, 16), (32, 4), (16, 2), (8, 1), (12, 2)])
def test_vgg_tiny_any_input_size(tiny, size, grid):
    out = tiny(images(2, size))
    assert set(out) == {"logits", "features"}
    assert out["logits"].shape == (2, 4) and out["logits"].dtype == tf.float32
    # Three "same" max-pools before the tap: ceil(size / 8), never 0 (8 px → a single 1x1 cell).
    assert out["features"].shape == (2, grid, grid, 64)
    assert np.isfinite(out["logits"].numpy()).all()


def test_vgg_tiny_is_small_and_flat(tiny):
    check_structure(tiny)
    assert tiny.count_params() < 100_000
    # VGG-BN: conv (no bias) -> BatchNorm -> ReLU; the tap is the last BatchNorm, before its ReLU.
    assert tiny.get_layer("block4_conv2").activation.__name__ == "linear"
    assert not tiny.get_layer("block4_conv2").use_bias
    assert tiny.get_layer("features").input is tiny.get_layer("block4_conv2_bn").output
    assert tiny.get_layer("block4_conv2_bn").momentum == 0.9
    after = [layer for layer in tiny.layers if layer.name == "block4_conv2_relu"]
    assert after and after[0].input is tiny.get_layer("features").output  # ReLU in the head, after the tap


@pytest.mark.parametrize(
    ("backbone", "grid", "channels"),
    [("vgg16", 4, 512), ("resnet50", 2, 2048), ("mobilenet_v2", 2, 1280)],
)
def test_large_backbones_build_flat(backbone, grid, channels):
    model = build_classifier(backbone, 3, input_shape=(64, 64, 3))
    check_structure(model)
    out = model(images(2, 64))
    assert out["logits"].shape == (2, 3) and out["logits"].dtype == tf.float32
    assert out["features"].shape == (2, grid, grid, channels)
    if backbone == "vgg16":  # the paper's tap: conv5_3 before its ReLU, before the last max-pool
        assert float(tf.reduce_min(out["features"])) < 0
        assert model.get_layer("features").input is model.get_layer("block5_conv3").output


def test_vgg16_loads_keras_notop_h5_by_name(vgg16_notop):
    """A Keras VGG16 notop weights file (legacy .h5) copies into our VGG16; ReLU of our pre-ReLU tap
    equals Keras' VGG16 block5_conv3 on Keras-preprocessed pixels."""
    reference, path = vgg16_notop
    model = build_classifier("vgg16", 4, weights=str(path))
    x = images(1, 32)
    ours = model(x)["features"].numpy()
    conv5_3 = keras.Model(reference.input, reference.get_layer("block5_conv3").output)
    theirs = conv5_3(keras.applications.vgg16.preprocess_input(x * 255.0)).numpy()
    assert ours.min() < 0
    np.testing.assert_allclose(np.maximum(ours, 0), theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_h5_that_is_not_the_backbone_is_a_clear_error(tmp_path, tiny):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, tiny)
    with pytest.raises(WeightsError, match=r"other\.h5.*vgg16"):
        build_classifier("vgg16", 4, weights=path)


def test_logits_float32_under_mixed_float16(mixed_float16):
    model = build_classifier("vgg_tiny", 4)
    out = model(images(2, 32))
    assert out["logits"].dtype == tf.float32
    assert out["features"].dtype == tf.float16
    assert all(v.dtype == "float32" for v in model.weights)


def test_keras_file_round_trip(tmp_path, tiny):
    path = tmp_path / "model.keras"
    tiny.save(path)
    loaded = keras.models.load_model(path)
    x = images(2, 32, seed=3)
    a, b = tiny(x), loaded(x)
    for key in ("logits", "features"):
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-6, atol=1e-6)
    check_structure(loaded)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weights_file_reproduces_outputs(tmp_path, tiny, suffix):
    path = tmp_path / f"teacher{suffix}"
    tiny.save_weights(path) if suffix == ".weights.h5" else tiny.save(path)
    keras.utils.set_random_seed(123)  # a different random init, which the file must overwrite
    model = build_classifier("vgg_tiny", 4, input_shape=(32, 32, 3), weights=str(path))
    x = images(2, 32, seed=4)
    np.testing.assert_allclose(model(x)["logits"].numpy(), tiny(x)["logits"].numpy(), rtol=1e-6, atol=1e-6)


def test_missing_weights_file_names_it(tmp_path):
    path = tmp_path / "nowhere" / "teacher.weights.h5"
    with pytest.raises(WeightsError, match=r"nowhere/teacher\.weights\.h5 does not exist"):
        build_classifier("vgg_tiny", 4, weights=path)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_weights_file_shape_mismatch_names_it(tmp_path, tiny, suffix):
    path = tmp_path / f"four_classes{suffix}"
    tiny.save_weights(path) if suffix == ".weights.h5" else tiny.save(path)
    with pytest.raises(WeightsError, match=rf"four_classes{suffix}"):
        build_classifier("vgg_tiny", 3, weights=path)


def test_unknown_weights_suffix(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"weights\.pt.*\.weights\.h5, \.keras or \.h5"):
        build_classifier("vgg_tiny", 4, weights=path)


def test_imagenet_offline_says_how_to_pass_a_file(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example.invalid: None -- no network")

    # keras.applications resolve get_file through keras.src.utils.file_utils; patch both names.
    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsError, match=r"ImageNet weights of vgg16.*URL fetch failure.*--weights PATH"):
        build_classifier("vgg16", 4, weights="imagenet")


def test_vgg_tiny_has_no_imagenet_weights():
    with pytest.raises(WeightsError, match=r"vgg_tiny has no keras\.applications counterpart"):
        build_classifier("vgg_tiny", 4, weights="imagenet")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_classes": 0}, "num_classes=0"), ({"input_shape": (32, 32, 1)}, r"input_shape=\(32, 32, 1\)")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_classifier("vgg_tiny", **{"num_classes": 4, **kwargs})


def test_logits_model_shares_weights(tiny):
    single = logits_model(tiny)
    x = images(2, 16)
    assert len(single.outputs) == 1
    np.testing.assert_array_equal(single(x).numpy(), tiny(x)["logits"].numpy())


def test_tf_keras_vis_gradcam_on_features(tiny):
    """tf-keras-vis Grad-CAM at the "features" tap equals a hand-written Grad-CAM, for the dict model
    (one score per output, outputs in key order: features, logits) and for logits_model."""
    x = images(2, 32, seed=5)
    classes = [1, 2]
    kwargs = {"penultimate_layer": "features", "seek_penultimate_conv_layer": False,
              "expand_cam": False, "normalize_cam": False}
    assert tiny.output_names == ["features", "logits"]
    cam_dict = Gradcam(tiny, model_modifier=ReplaceToLinear())(
        [InactiveScore(), CategoricalScore(classes)], x, **kwargs)
    cam_single = Gradcam(logits_model(tiny), model_modifier=ReplaceToLinear())(
        CategoricalScore(classes), x, **kwargs)

    with tf.GradientTape() as tape:
        out = tiny(x)
        score = tf.reduce_sum(tf.gather(out["logits"], classes, axis=1, batch_dims=1))
    grads = tape.gradient(score, out["features"])
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    expected = tf.nn.relu(tf.reduce_sum(weights * out["features"], axis=-1)).numpy()

    assert expected.shape == (2, 4, 4) and expected.max() > 0
    np.testing.assert_allclose(cam_dict, expected, rtol=1e-5, atol=1e-6 * expected.max())
    np.testing.assert_allclose(cam_single, expected, rtol=1e-5, atol=1e-6 * expected.max())
