"""Backbones with a named feature tap, built flat on the caller's input tensor.

Each backbone is a function of the image tensor (pixels in [0, 1]) that returns the *tap* (the tensor
attention and feature matching read) plus a ``head`` that turns the tap into what the global pooling
sees. Everything is built as layers of the caller's graph, never as a nested ``keras.Model`` layer,
because tf-keras-vis and ``model.get_layer(...)`` need to reach the tap.

Input scaling lives inside the model (:class:`ImagePreprocess`) and depends only on the backbone, never
on ``weights``: a model is the same graph whether it starts from ImageNet or from scratch, so any
weights file loads into any model of the same backbone, and exported models take [0, 1] images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers, ops

from ird_tf.config import BACKBONE_REVISIONS, VGG_TINY_NATIVE
from ird_tf.errors import ConfigError

# Keras' caffe-style ImageNet mean, in BGR order (``keras.applications.imagenet_utils``).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
PREPROCESS_MODES = ("caffe", "tf")

# VGG stages as (width, convolutions). VGG16 is Simonyan & Zisserman's configuration D. vgg_tiny is VGG-BN
# (BatchNorm after each conv): trained from scratch on a CPU without it, it sat at chance for epochs.
VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG_TINY_STAGES = ((8, 2), (16, 2), (32, 2), (64, 2))

Tensor = keras.KerasTensor


@keras.saving.register_keras_serializable(package="ird_tf")
class ImagePreprocess(layers.Layer):
    """[0, 1] RGB → the scale the backbone's ImageNet weights expect.

    ``caffe`` (VGG, ResNet): ``x * 255``, RGB → BGR, minus the ImageNet mean, as
    ``keras.applications.vgg16.preprocess_input``. ``tf`` (MobileNetV2, vgg_tiny): ``2x - 1``.
    A registered layer (not a Lambda) so ``.keras`` files load in safe mode; import ``ird_tf.models``
    before ``keras.models.load_model``.
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in PREPROCESS_MODES:
            raise ConfigError(f"ImagePreprocess mode={mode!r}; expected one of {list(PREPROCESS_MODES)}")
        self.mode = mode

    def call(self, x):
        if self.mode == "tf":
            return x * 2.0 - 1.0
        mean = ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return ops.flip(x, axis=-1) * 255.0 - mean

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone.

    ``build(images) -> tap``; ``head(features) -> tensor`` given to global average pooling (for VGG
    the tap is pre-activation, so the head holds the last ReLU and max-pool); ``reference(weights)``
    builds the matching ``keras.applications`` model (include_top=False) whose weights are copied
    in by layer name, or is None when there are no published weights.
    """

    name: str
    preprocess: str
    build: Callable[[Tensor], Tensor]
    head: Callable[[Tensor], Tensor]
    reference: Callable[[str], keras.Model] | None

    @property
    def revision(self) -> int:
        """Raised when the graph changes, so run directories of older graphs are not reused (kept in
        the TF-free config, where run bookkeeping reads it)."""
        return BACKBONE_REVISIONS[self.name]


def _vgg_stack(
    x: Tensor, stages: tuple[tuple[int, int], ...], batch_norm: bool = False, keep: int = 0,
    separable: bool = False,
) -> Tensor:
    """VGG conv stack up to the last convolution, *before* its ReLU and before the last max-pool.

    Layer names are those of ``keras.applications.VGG16`` (block1_conv1 …, block1_pool …), so ImageNet
    weights copy in by name. Pools use ``padding="same"`` (ceil): identical to VGG's valid pooling on
    even sizes, and a map never shrinks below 1x1, so any input size (down to 1 px) works.
    ``batch_norm`` (VGG-BN, for networks trained from scratch): conv without bias -> BatchNorm -> ReLU;
    the tap is then the last BatchNorm's output, still before the ReLU.
    ``keep`` (native students): the first ``keep`` max-pools are left out, so the feature grid is
    ``2**keep`` times larger on each side; the convolutions keep their names and weights.
    ``separable``: every convolution after the first is depthwise-separable (a 3x3 per channel, then a
    1x1 across them: about ``1/9 + 1/width`` of the multiply-adds), same names, other weights.
    """
    for s, (width, convs) in enumerate(stages, start=1):
        if s > 1 + keep:
            x = layers.MaxPooling2D(2, padding="same", name=f"block{s - 1}_pool")(x)
        for c in range(1, convs + 1):
            conv = layers.SeparableConv2D if separable and (s, c) != (1, 1) else layers.Conv2D
            x = conv(width, 3, padding="same", use_bias=not batch_norm, name=f"block{s}_conv{c}")(x)
            if batch_norm:
                # momentum 0.9: the moving statistics must follow runs of a few hundred steps;
                # synchronized: batch statistics over all replicas, so tf.distribute trains the same model
                x = layers.BatchNormalization(momentum=0.9, synchronized=True, name=f"block{s}_conv{c}_bn")(x)
            if not (s == len(stages) and c == convs):
                x = layers.ReLU(name=f"block{s}_conv{c}_relu")(x)
    return x


def _vgg_head(stages: tuple[tuple[int, int], ...]) -> Callable[[Tensor], Tensor]:
    n, convs = len(stages), stages[-1][1]

    def head(x: Tensor) -> Tensor:
        x = layers.ReLU(name=f"block{n}_conv{convs}_relu")(x)
        return layers.MaxPooling2D(2, padding="same", name=f"block{n}_pool")(x)

    return head


def _identity(x: Tensor) -> Tensor:
    return x


def _application(constructor: Callable[..., keras.Model]) -> Callable[[Tensor], Tensor]:
    """Layers of a ``keras.applications`` model built on our tensor (flat in our graph); the tap is
    its last block output (post-activation)."""

    def build(x: Tensor) -> Tensor:
        return constructor(include_top=False, weights=None, input_tensor=x).output

    return build


def _reference(constructor: Callable[..., keras.Model], input_shape=(None, None, 3)):
    def reference(weights: str) -> keras.Model:
        return constructor(include_top=False, weights=weights, input_shape=input_shape)

    return reference


_REGISTRY: dict[str, Backbone] = {
    "vgg_tiny": Backbone(
        "vgg_tiny", "tf", lambda x: _vgg_stack(x, VGG_TINY_STAGES, batch_norm=True),
        _vgg_head(VGG_TINY_STAGES), None,
    ),
    "vgg16": Backbone(
        "vgg16", "caffe", lambda x: _vgg_stack(x, VGG16_STAGES), _vgg_head(VGG16_STAGES),
        _reference(keras.applications.VGG16),
    ),
    "resnet50": Backbone(
        "resnet50", "caffe", _application(keras.applications.ResNet50), _identity,
        _reference(keras.applications.ResNet50),
    ),
    "mobilenet_v2": Backbone(
        "mobilenet_v2", "tf", _application(keras.applications.MobileNetV2), _identity,
        # 224: the size Keras picks the ImageNet file for (conv weights fit any size).
        _reference(keras.applications.MobileNetV2, (224, 224, 3)),
    ),
}
# Native students that keep the grid: ``<vgg>_keep<k>`` leaves out the first k max-pools, so a student
# reading an image 2**k times smaller (k = log2 of the factor) has the Teacher's feature grid (FM and AT+
# need no resizing); smaller k trades grid for FLOPs. Same layer names as the base VGG: ImageNet weights
# and trained classifiers' convolutions copy in by name. ``vgg_tiny_keep<k>_w<p>``: every stage p % as wide
# (the Teacher's FLOPs budget at 1.25x leaves room for the full grid only at half width); ``_sep``:
# depthwise-separable convolutions (``config.VGG_TINY_NATIVE`` lists them all).
for _name, (_k, _p, _sep) in VGG_TINY_NATIVE.items():
    _stages = tuple((width * _p // 100, convs) for width, convs in VGG_TINY_STAGES)
    _REGISTRY[_name] = Backbone(
        _name, "tf",
        lambda x, k=_k, s=_stages, sep=_sep: _vgg_stack(x, s, batch_norm=True, keep=k, separable=sep),
        _vgg_head(_stages), None,
    )
for _k in range(1, len(VGG16_STAGES)):
    _REGISTRY[f"vgg16_keep{_k}"] = Backbone(
        f"vgg16_keep{_k}", "caffe", lambda x, k=_k: _vgg_stack(x, VGG16_STAGES, keep=k),
        _vgg_head(VGG16_STAGES), _reference(keras.applications.VGG16),
    )
BACKBONES = tuple(_REGISTRY)


def get_backbone(name: str) -> Backbone:
    """The registered backbone ``name``; an unknown name is a ConfigError listing the known ones."""
    if name not in _REGISTRY:
        raise ConfigError(f"model.backbone={name!r} is not accepted; expected one of {list(BACKBONES)}")
    return _REGISTRY[name]


def build_backbone(name: str, images: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """Preprocessing + conv stack on ``images`` ([0, 1] RGB); returns ``(tap, head)``."""
    spec = get_backbone(name)
    x = ImagePreprocess(spec.preprocess, name="preprocess")(images)
    return spec.build(x), spec.head
