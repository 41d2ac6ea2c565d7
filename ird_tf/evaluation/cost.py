"""What a classifier costs to run.

- :func:`count_macs` / :func:`flops_per_image`: analytic multiply-adds of the Conv2D, DepthwiseConv2D,
  SeparableConv2D and Dense layers at a given input size. Everything else (bias adds, BatchNorm,
  activations, pooling, the input scaling) is left out: it is O(activations), not O(activations x
  kernel), below 1 % of a VGG's count. FLOPs = 2 x multiply-adds (one multiply, one add).
- :func:`images_per_second`: throughput of a compiled inference call (logits only, as served) on
  random batches after warm-up (median batch time), in the calling process, so models measured
  together are comparable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf


def _at_input_size(model: keras.Model, input_size: int | None) -> keras.Model:
    """``model`` itself if its input size is fixed (and matches), else a clone on a fixed-size input
    (the clone only serves to know every layer's output shape)."""
    shape = tuple(model.inputs[0].shape[1:3])
    if None not in shape:
        if input_size is not None and shape != (input_size, input_size):
            raise ValueError(f"model {model.name!r} takes {shape} inputs; input_size={input_size}")
        return model
    if input_size is None:
        raise ValueError(f"model {model.name!r} has a variable input size: pass input_size")
    channels = model.inputs[0].shape[-1]
    image = keras.Input((input_size, input_size, channels), name=model.inputs[0].name)
    return keras.models.clone_model(model, input_tensors=image)


def count_macs(model: keras.Model, input_size: int | None = None) -> dict[str, int]:
    """Multiply-adds per image of each counted layer, by layer name (see the module docstring).

    Conv2D: ``h_out w_out c_out kh kw c_in / groups``; DepthwiseConv2D: ``h_out w_out c_in
    depth_multiplier kh kw``; SeparableConv2D: its depthwise part plus ``h_out w_out c_out c_mid``;
    Dense: ``units x inputs`` for every position of its (flattened) input.
    """
    model = _at_input_size(model, input_size)
    counts: dict[str, int] = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.DepthwiseConv2D
                          | keras.layers.SeparableConv2D | keras.layers.Dense):
            continue
        out = tuple(layer.output.shape[1:])
        if None in out:
            raise ValueError(f"count_macs: layer {layer.name!r} has an unknown output shape {out}")
        c_in = int(layer.input.shape[-1])
        positions = int(np.prod(out[:-1], dtype=np.int64))
        if isinstance(layer, keras.layers.Dense):
            macs = positions * c_in * layer.units
        else:
            kh, kw = layer.kernel_size
            if isinstance(layer, keras.layers.SeparableConv2D):
                c_mid = c_in * layer.depth_multiplier
                macs = positions * (c_mid * kh * kw + c_mid * out[-1])
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                macs = positions * c_in * layer.depth_multiplier * kh * kw
            else:
                macs = positions * out[-1] * kh * kw * c_in // layer.groups
        counts[layer.name] = int(macs)
    return counts


def flops_per_image(model: keras.Model, input_size: int | None = None) -> int:
    """2 x the multiply-adds of :func:`count_macs`."""
    return 2 * sum(count_macs(model, input_size).values())


def images_per_second(
    model: keras.Model,
    input_size: int,
    *,
    batch_size: int = 32,
    warmup: int = 2,
    min_seconds: float = 2.0,
    min_batches: int = 5,
    seed: int = 0,
) -> float:
    """Images per second of ``model`` in inference (a ``tf.function`` returning the logits) on batches
    of ``batch_size`` random images of ``input_size`` px: ``batch_size`` / the median time of one batch,
    timed after ``warmup`` calls (tracing) over at least ``min_batches`` batches and ``min_seconds``
    seconds. The median, not the mean, so a burst of other load on the machine does not decide the
    number; still wall-clock: compare models measured in the same process, one after the other."""
    x = tf.random.stateless_uniform([batch_size, input_size, input_size, 3], seed=[seed, 0])

    @tf.function(reduce_retracing=True)
    def infer(images):
        out = model(images, training=False)
        return out["logits"] if isinstance(out, Mapping) else out

    for _ in range(max(warmup, 1)):
        infer(x).numpy()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_batches or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        infer(x).numpy()
        times.append(time.perf_counter() - t0)
    return batch_size / float(np.median(times))


__all__ = ["count_macs", "flops_per_image", "images_per_second"]
