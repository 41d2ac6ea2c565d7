"""Backbone registry and the in-model input scaling, against Keras' own preprocess functions."""

import keras
import numpy as np
import pytest

from ird_tf import config
from ird_tf.config import ConfigError
from ird_tf.models import BACKBONES, ImagePreprocess, get_backbone


def test_registry_matches_config():
    assert BACKBONES == config.BACKBONES
    for name in BACKBONES:
        assert get_backbone(name).name == name


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ConfigError, match=r"model.backbone='vgg19'.*vgg_tiny.*mobilenet_v2"):
        get_backbone("vgg19")


@pytest.mark.parametrize(
    ("mode", "reference"),
    [
        ("caffe", keras.applications.vgg16.preprocess_input),
        ("caffe", keras.applications.resnet50.preprocess_input),
        ("tf", keras.applications.mobilenet_v2.preprocess_input),
    ],
)
def test_preprocess_matches_keras_applications(mode, reference):
    x = np.random.default_rng(0).random((2, 5, 7, 3)).astype("float32")
    ours = np.asarray(ImagePreprocess(mode)(x))
    expected = reference(x * 255.0)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-3)


def test_preprocess_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="torch"):
        ImagePreprocess("torch")


def test_preprocess_serializes():
    layer = keras.layers.deserialize(keras.layers.serialize(ImagePreprocess("tf", name="p")))
    assert isinstance(layer, ImagePreprocess) and layer.mode == "tf" and layer.name == "p"
