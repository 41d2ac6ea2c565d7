"""The classifier every part of ird_tf trains: a flat functional model with a named feature tap.

``image [B, H, W, 3] in [0, 1]`` → backbone → ``features`` (the tap, an identity layer so the name is
stable across backbones) → head (VGG: ReLU + max-pool) → global average pool → ``logits`` (Dense,
float32 even under a mixed policy, so losses and softmax stay in float32).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import keras
from keras import layers

from ird_tf.errors import ConfigError, WeightsError
from ird_tf.models.backbones import Backbone, build_backbone, get_backbone


def _first_mismatch(error: Exception) -> str:
    """Keras's load error in one line: the first variable whose shape differs, or the first line."""
    text = str(error)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    where = re.search(r"Variable path=([^,\s]+)", text)
    if shapes and where:
        return f"{where.group(1)} has shape {shapes.group(1)} in the model, {shapes.group(2)} in the file"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(error).__name__


def build_classifier(
    backbone: str,
    num_classes: int,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    weights: str | os.PathLike | None = None,
    name: str | None = None,
) -> keras.Model:
    """A flat functional classifier with outputs ``{"logits": float32 [B, C], "features": [B, h, w, K]}``.

    ``input_shape`` may leave height and width as None: any size works, so a native low-resolution
    student is the same call. ``weights``: None (random), ``"imagenet"`` or a file (see
    :func:`load_initial_weights`). ``features`` has the policy's compute dtype (float16 under
    mixed_float16). Give teacher and student different ``name`` s when both live in one model.
    """
    spec = get_backbone(backbone)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r}: expected an integer >= 1")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ConfigError(f"input_shape={tuple(input_shape)!r}: expected (height, width, 3) RGB")
    image = keras.Input(shape=tuple(input_shape), name="image")
    tap, head = build_backbone(backbone, image)
    features = layers.Activation("linear", name="features")(tap)
    x = layers.GlobalAveragePooling2D(name="global_pool")(head(features))
    logits = layers.Dense(num_classes, dtype="float32", name="logits")(x)
    outputs = {"logits": logits, "features": features}
    model = keras.Model(image, outputs, name=name or f"{backbone}_classifier")
    load_initial_weights(model, spec, weights)
    return model


def logits_model(model: keras.Model) -> keras.Model:
    """The same layers with the single output ``logits`` (shares weights), for tools that want one.

    tf-keras-vis: ``Gradcam(logits_model(m), model_modifier=ReplaceToLinear())(CategoricalScore(c), x,
    penultimate_layer="features", seek_penultimate_conv_layer=False)``. The dict model works too, with
    one score per output in key order: ``[InactiveScore(), CategoricalScore(c)]`` (features, logits).
    Always pass ``seek_penultimate_conv_layer=False``: otherwise tf-keras-vis walks back from the
    identity ``features`` layer to the nearest Conv2D, which is the same tensor for the VGGs but a
    pre-BatchNorm one for ResNet50 and MobileNetV2.
    """
    return keras.Model(model.input, model.get_layer("logits").output, name=f"{model.name}_logits")


def load_initial_weights(
    model: keras.Model, backbone: str | Backbone, weights: str | os.PathLike | None
) -> keras.Model:
    """Loads ``weights`` into ``model`` (built by :func:`build_classifier` for ``backbone``).

    - ``None``: keep the random initialisation.
    - ``"imagenet"``: Keras' ImageNet file for the backbone (download), copied by layer name.
    - ``*.weights.h5``: a classifier's ``save_weights`` file (same backbone and classes), exact load.
    - ``*.keras``: a saved classifier; every weighted layer is copied by name.
    - other ``*.h5``: a ``keras.applications`` weights file of the backbone (e.g. Keras'
      ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``), copied by layer name; the head keeps
      its random initialisation.
    """
    spec = get_backbone(backbone) if isinstance(backbone, str) else backbone
    if weights is None:
        return model
    if isinstance(weights, str) and weights == "imagenet":
        _require_reference(spec, "imagenet")
        try:
            source = spec.reference("imagenet")
        except Exception as e:  # the download raises a bare Exception on network errors
            raise WeightsError(
                f"could not get the ImageNet weights of {spec.name} ({type(e).__name__}: {e}). "
                "Without network access, fetch Keras' include_top=False weights file for this backbone "
                "elsewhere and pass its path: --weights PATH (config: model.weights: PATH)."
            ) from e
        _copy_by_name(source, model, f"ImageNet weights of {spec.name}")
        return model

    path = Path(weights)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist; expected a .weights.h5 or .keras file of a "
            f"{spec.name} classifier, a keras.applications .h5 weights file, or 'imagenet'"
        )
    suffix = path.name.lower()
    if suffix.endswith(".weights.h5"):
        try:
            with warnings.catch_warnings(record=True) as caught:  # Keras warns per layer before it fails
                warnings.simplefilter("always")
                model.load_weights(path)
        except Exception as e:
            raise WeightsError(
                f"weights file {path} does not fit a {spec.name} classifier with "
                f"{model.get_layer('logits').units} classes: {_first_mismatch(e)} (weights of another "
                "backbone, input size or number of classes?)"
            ) from e
        for w in caught:  # a load that worked keeps its warnings
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    elif suffix.endswith(".keras"):
        try:
            source = keras.models.load_model(path, compile=False)
        except Exception as e:
            raise WeightsError(f"weights file {path} could not be read as a Keras model: {e}") from e
        _copy_by_name(source, model, f"weights file {path}")
    elif suffix.endswith((".h5", ".hdf5")):
        _require_reference(spec, str(path))
        try:
            source = spec.reference(str(path))
        except Exception as e:
            raise WeightsError(
                f"weights file {path} is not a keras.applications {spec.name} include_top=False "
                f"weights file (nor a .weights.h5 classifier file): {e}"
            ) from e
        _copy_by_name(source, model, f"weights file {path}")
    else:
        raise WeightsError(
            f"weights file {path}: unknown type; expected a name ending in .weights.h5, .keras or .h5"
        )
    return model


def _require_reference(spec: Backbone, what: str) -> None:
    if spec.reference is None:
        raise WeightsError(
            f"weights={what!r}: {spec.name} has no keras.applications counterpart; use None, "
            "or a .weights.h5 / .keras file of a trained classifier"
        )


def _copy_by_name(source: keras.Model, target: keras.Model, origin: str) -> None:
    """Copies every weighted layer of ``source`` into the same-named layer of ``target``.

    Strict: a source layer missing from ``target`` or with other shapes is an error (a silent partial
    copy would train from a half-random model)."""
    by_name = {layer.name: layer for layer in target.layers}
    copied = 0
    for layer in source.layers:
        values = layer.get_weights()
        if not values:
            continue
        dst = by_name.get(layer.name)
        if dst is None:
            raise WeightsError(f"{origin}: layer {layer.name!r} has no counterpart in model {target.name!r}")
        want = [tuple(v.shape) for v in dst.weights]
        got = [tuple(v.shape) for v in values]
        if want != got:
            raise WeightsError(
                f"{origin}: layer {layer.name!r} has weight shapes {got}, "
                f"model {target.name!r} expects {want}"
            )
        dst.set_weights(values)
        copied += 1
    if not copied:
        raise WeightsError(f"{origin}: holds no layer weights to copy into {target.name!r}")
