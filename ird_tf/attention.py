"""Class attention maps (AT+, Grad-CAM, Grad-CAM++) from a classifier's feature tap, differentiable.

The model is a flat functional classifier whose feature tap is the layer ``"features"`` and whose
logits come out under the key ``"logits"``. It is split once (cached) into ``image -> features`` and
``features -> logits``: the backbone runs once, then the head runs inside an inner ``GradientTape``
that watches the features tensor, so the gradient d score / d A costs one pass through the (tiny) head
and the tape holds no backbone activations. For all classes the head runs once on one stacked copy of
the features per class, so every class's gradient comes from a single backward pass. The two halves
share the model's layers and weights, so this is the same single forward pass the caller would make.

Definitions (A = features [B, h, w, K], S_c = logit of class c):

- channel weights ``w_kc = mean_{ij} d(sum_b S_bc) / dA_bijk``. Summing the score over the batch gives
  each sample its own gradient because samples are independent; a BatchNorm in training mode inside
  the *head* would couple them (not the case for GAP + Dense heads; BatchNorm in the backbone is not
  involved because only the head is differentiated).
- ``positive`` (AT+, del Amor et al.): ``map_c = sum_k ReLU(w_kc A_k)``;
  ``gradcam``: ``ReLU(sum_k w_kc A_k)``; ``gradcam_pp``: tf-keras-vis's ``GradcamPlusPlus`` formula,
  including its ``exp(S_bc)`` factor: a positive scale of each map, so a stack of all classes
  normalised together weights each class by exp(S_c) (softmax-like), and logits above ~88 overflow
  float32.

Second order: called inside an outer tape, the inner gradient is taken *inside* the outer tape, so the
maps are differentiable with respect to the weights both through A and through the channel weights
(``second_order=False`` stops the latter: first order, cheaper). Teacher maps must never carry
gradients: the caller applies ``tf.stop_gradient`` to them (the loss terms do so as well).
"""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf

from ird_tf.config import AT_NORMS, AT_WEIGHTINGS, MAP_RESIZES, ConfigError

_EPS = 1e-7
_SPLITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _split(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(image -> features, features -> logits) sub-models sharing ``model``'s layers; cached."""
    parts = _SPLITS.get(model)
    if parts is not None:
        return parts
    try:
        features = model.get_layer("features").output
        outputs = model.output
        logits = outputs["logits"] if isinstance(outputs, dict) else model.get_layer("logits").output
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        backbone = keras.Model(inputs, features, name=f"{model.name}_to_features")
        head = keras.Model(features, logits, name=f"{model.name}_head")
    except (ValueError, AttributeError, KeyError) as e:
        raise ValueError(
            f"attention_maps: model {model.name!r} must be a flat functional classifier with a layer "
            f"named 'features' (the tap) from which a 'logits' output is computed ({e})"
        ) from e
    _SPLITS[model] = (backbone, head)
    return backbone, head


def _class_scores(logits: tf.Tensor, classes) -> list[tf.Tensor]:
    """Per-sample scores [B], one per map; selected from the logits inside the tape."""
    if isinstance(classes, str):
        if classes != "all":
            raise ConfigError(f"classes={classes!r} is not accepted; expected 'all' or int labels [B]")
        return [logits[:, c] for c in range(logits.shape[-1])]
    classes = tf.cast(tf.reshape(classes, [-1]), tf.int32)
    return [tf.gather(logits, classes, axis=1, batch_dims=1)]


def _gradcam_pp_weights(a: tf.Tensor, g: tf.Tensor, score: tf.Tensor) -> tf.Tensor:
    """Grad-CAM++ channel weights [B, K] exactly as tf-keras-vis 0.8.7 ``GradcamPlusPlus``."""
    s = tf.exp(score)[:, None, None, None]
    first = s * g
    second = first * g
    third = second * g
    global_sum = tf.reduce_sum(a, axis=(1, 2), keepdims=True)
    denom = second * 2.0 + third * global_sum
    denom += tf.cast(second == 0.0, denom.dtype)
    alphas = second / denom
    norm = tf.reduce_sum(alphas, axis=(1, 2), keepdims=True)
    alphas /= norm + tf.cast(norm == 0.0, norm.dtype)
    return tf.reduce_sum(tf.nn.relu(first) * alphas, axis=(1, 2))


def attention_maps(
    model: keras.Model,
    images: tf.Tensor,
    *,
    classes="all",
    weighting: str = "positive",
    second_order: bool = True,
    training: bool = False,
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """One forward pass of ``model``; returns ``({"logits", "features"}, maps float32 [B, h, w, K])``
    (float64 maps for a float64 model).

    ``classes="all"``: one map per class, stacked in class order (K = num_classes);
    int labels [B]: the map of each sample's own class (K = 1).
    """
    if weighting not in AT_WEIGHTINGS:
        raise ConfigError(f"weighting={weighting!r} is not accepted; expected one of {list(AT_WEIGHTINGS)}")
    backbone, head = _split(model)
    features = backbone(images, training=training)
    # Map maths in float32 (float64 for a float64 model, as in gradient checks). Under a float16 policy
    # the gradients of a GAP head are O(1 / (h w)) and would fall below float16's normal range on large
    # grids: the score is scaled by h*w (as in loss scaling) and the scale undone in float32.
    dtype = tf.float64 if features.dtype == tf.float64 else tf.float32
    scale = 1.0
    if features.dtype in (tf.float16, tf.bfloat16):
        scale = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], dtype)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(features)
        if isinstance(classes, str):
            # All classes in one backward pass: the head runs on n_classes stacked copies of the
            # features and copy c is scored on class c, so d total / d copy_c is class c's gradient.
            n = int(head.output.shape[-1])
            stacked = tf.tile(features, [n, 1, 1, 1])
            all_logits = tf.reshape(head(stacked, training=training), [n, -1, n])
            logits = all_logits[0]
            scores = _class_scores(logits, classes)
            own = tf.linalg.diag_part(tf.transpose(all_logits, [1, 0, 2]))  # [B, n]: copy c, class c
            total = tf.reduce_sum(tf.cast(own, dtype)) * scale
            source = stacked
        else:
            logits = head(features, training=training)
            scores = _class_scores(logits, classes)
            total = tf.reduce_sum(tf.cast(scores[0], dtype)) * scale
            source = features
    g = tf.cast(tape.gradient(total, source), dtype) / scale
    grads = tf.split(g, len(scores), axis=0)
    del tape
    a = tf.cast(features, dtype)

    if weighting == "gradcam_pp":
        weights = [
            _gradcam_pp_weights(a, g, tf.cast(s, dtype)) for g, s in zip(grads, scores, strict=True)
        ]
    else:
        weights = [tf.reduce_mean(g, axis=(1, 2)) for g in grads]
    w = tf.stack(weights, axis=-1)  # [B, K, n_maps]
    if not second_order:  # first order: the maps' gradients flow through A only
        w = tf.stop_gradient(w)

    if weighting == "positive":
        # sum_k ReLU(w A) = sum_k ReLU(w) ReLU(A) + ReLU(-w) ReLU(-A): one batched matmul, no [.., K, C]
        # intermediate.
        a2 = tf.concat([tf.nn.relu(a), tf.nn.relu(-a)], axis=-1)
        w2 = tf.concat([tf.nn.relu(w), tf.nn.relu(-w)], axis=1)
        maps = tf.einsum("bhwk,bkc->bhwc", a2, w2)
    else:
        maps = tf.nn.relu(tf.einsum("bhwk,bkc->bhwc", a, w))
    maps.set_shape(a.shape[:3].concatenate([len(scores)]))
    return {"logits": logits, "features": features}, maps


def target_classes(at_classes: str, labels=None, teacher_logits=None):
    """The ``classes`` argument for a ``loss.at_classes`` setting: ``"all"``, or the labels for
    ``"target"`` (the teacher's predicted class when the batch has no labels)."""
    if at_classes == "all":
        return "all"
    if at_classes != "target":
        raise ConfigError(f"loss.at_classes={at_classes!r} is not accepted; expected 'all' or 'target'")
    if labels is not None:
        return labels
    if teacher_logits is None:
        raise ValueError("loss.at_classes='target' needs labels or the teacher's logits")
    return tf.argmax(teacher_logits, axis=-1, output_type=tf.int32)


def normalize_maps(maps: tf.Tensor, method: str = "minmax", temperature: float = 0.01) -> tf.Tensor:
    """Per-sample normalisation over the whole (h, w, K) stack.

    ``minmax``: (m - min) / (max - min + eps), so a constant map gives zeros, not NaN;
    ``softmax``: softmax of the flattened map / temperature; ``l2``: divided by its L2 norm; ``none``.
    """
    if method not in AT_NORMS:
        raise ConfigError(f"loss.at_norm={method!r} is not accepted; expected one of {list(AT_NORMS)}")
    if maps.dtype != tf.float64:
        maps = tf.cast(maps, tf.float32)
    if method == "none":
        return maps
    axes = tuple(range(1, maps.shape.rank))
    if method == "minmax":
        lo = tf.reduce_min(maps, axis=axes, keepdims=True)
        hi = tf.reduce_max(maps, axis=axes, keepdims=True)
        return (maps - lo) / (hi - lo + _EPS)
    flat = tf.reshape(maps, [tf.shape(maps)[0], -1])
    if method == "softmax":
        flat = tf.nn.softmax(flat / temperature, axis=-1)
    else:
        flat = tf.math.l2_normalize(flat, axis=-1, epsilon=1e-12)
    return tf.reshape(flat, tf.shape(maps))


def adaptive_max_pool(x: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """PyTorch ``adaptive_max_pool2d`` on NHWC: output cell i takes the max over input rows
    [floor(i H / h), ceil((i + 1) H / h)) (same for columns). Needs static spatial sizes."""
    big_h, big_w = x.shape[1], x.shape[2]
    h, w = size
    if big_h is None or big_w is None:
        raise ValueError(f"adaptive_max_pool needs a static spatial shape, got {x.shape}")
    if big_h % h == 0 and big_w % w == 0:
        k = (big_h // h, big_w // w)
        return tf.nn.max_pool2d(x, k, k, "VALID")
    rows = [tf.reduce_max(x[:, i * big_h // h: -(-(i + 1) * big_h // h)], axis=1) for i in range(h)]
    x = tf.stack(rows, axis=1)
    cols = [tf.reduce_max(x[:, :, j * big_w // w: -(-(j + 1) * big_w // w)], axis=2) for j in range(w)]
    return tf.stack(cols, axis=2)


def resize_maps(maps: tf.Tensor, size: tuple[int, int], method: str = "area") -> tf.Tensor:
    """Brings maps or features [B, H, W, K] to the grid ``size`` (h, w): area averaging, bilinear, or
    adaptive max-pooling. Returns ``maps`` unchanged when already on that grid."""
    if method not in MAP_RESIZES:
        raise ConfigError(f"resize method={method!r} is not accepted; expected one of {list(MAP_RESIZES)}")
    size = (int(size[0]), int(size[1]))
    if tuple(maps.shape[1:3]) == size:
        return maps
    if method == "maxpool":
        return adaptive_max_pool(maps, size)
    return tf.image.resize(maps, size, method=method)


__all__ = [
    "attention_maps", "normalize_maps", "resize_maps", "adaptive_max_pool", "target_classes", "MAP_RESIZES",
]
