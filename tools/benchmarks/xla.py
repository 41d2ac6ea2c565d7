"""XLA (``jit_compile=True``) against TensorFlow's own kernels on this CPU: train steps, single ops, and the
augmentation's warp.

Every pair (the same function compiled with and without XLA) runs in interleaved rounds; a figure is the
median over rounds of the within-round ratio of XLA's time to the plain one's (> 1: XLA is slower).

- steps: the Teacher's and the Distiller's (CE + FM + AT+, all classes) compiled train functions,
  ``model.compile(jit_compile=...)``, vgg_tiny and VGG16 at 128 px, batch 8, float32;
- ops, forward + backward (the gradient of sum(y^2) with respect to every input), VGG16's shapes at
  128 px, batch 8: a 3x3 convolution (64 channels at 128x128, 256 at 32x32), a 2x2 max-pool, and
  conv + ReLU + max-pool. Without XLA the convolutions are oneDNN kernels and the max-pool gradient
  TensorFlow's own; with XLA the max-pool gradient is XLA's ``select-and-scatter`` (in a profile of a
  compiled step: ``reduce-window``, ``scatter`` and the layout copies around the convolutions);
- the augmentation's warp (``data.warp_xla``), where XLA is the faster side.
"""

from __future__ import annotations

import statistics

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import interleaved_rounds, within_round_ratios
from benchmarks.data import warp_xla

BATCH = 8
NUM_CLASSES = 4


def _grad_fn(fn, *shapes_scales):
    rng = np.random.default_rng(0)
    inputs = [tf.Variable(rng.random(shape, dtype=np.float32) * scale) for shape, scale in shapes_scales]

    def forward_backward():
        with tf.GradientTape() as tape:
            y = fn(*inputs)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, inputs)

    return forward_backward


def op_cases() -> dict:
    def conv(x, k):
        return tf.nn.conv2d(x, k, 1, "SAME")

    def pool(x):
        return tf.nn.max_pool2d(x, 2, 2, "SAME")

    def conv_relu_pool(x, k):
        return pool(tf.nn.relu(conv(x, k)))

    big, small = (BATCH, 128, 128, 64), (BATCH, 32, 32, 256)
    return {
        "conv3x3_128px_64ch": _grad_fn(conv, (big, 1.0), ((3, 3, 64, 64), 0.01)),
        "conv3x3_32px_256ch": _grad_fn(conv, (small, 1.0), ((3, 3, 256, 256), 0.01)),
        "maxpool2x2_128px_64ch": _grad_fn(pool, (big, 1.0)),
        "conv_relu_maxpool_128px_64ch": _grad_fn(conv_relu_pool, (big, 1.0), ((3, 3, 64, 64), 0.01)),
    }


def _pairs_ratio(pairs: dict, *, rounds: int, repeats: int, label: str) -> dict:
    """``pairs``: name -> (plain fn, xla fn). Returns per name the XLA/plain time ratio and both times."""
    steps = {}
    for name, (plain, xla) in pairs.items():
        steps[f"{name}|plain"], steps[f"{name}|xla"] = plain, xla
    for fn in steps.values():
        fn()
        fn()
    per_round = interleaved_rounds(steps, rounds=rounds, repeats=repeats)
    out = {}
    for name in pairs:
        ratios = within_round_ratios(per_round, f"{name}|xla", f"{name}|plain")
        out[name] = {"plain_ms": round(1e3 * statistics.median(r[f"{name}|plain"] for r in per_round), 1),
                     "xla_ms": round(1e3 * statistics.median(r[f"{name}|xla"] for r in per_round), 1),
                     "xla_over_plain_time": round(statistics.median(ratios), 2)}
        print(f"  {label} {name}: {out[name]}", flush=True)
    return out


def _train_function(model: keras.Model, batch, jit: bool):
    model.compile(optimizer=keras.optimizers.Adam(1e-4), jit_compile=jit)
    model.make_train_function()
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
    return lambda fn=model.train_function: float(fn(iterator)["loss"])


def step_pairs(backbone: str, size: int) -> dict:
    from ird_tf.config import LossConfig
    from ird_tf.models import build_classifier
    from ird_tf.training import Distiller, Supervised

    shape = (size, size, 3)
    rng = np.random.default_rng(0)
    images = rng.random((BATCH, size, size, 3), dtype=np.float32)
    labels = (np.arange(BATCH) % NUM_CLASSES).astype(np.int32)
    pairs: dict = {}
    for name in ("teacher", "distill_ce_fm_at_all"):
        fns = []
        for jit in (False, True):
            keras.utils.set_random_seed(0)
            if name == "teacher":
                model, batch = Supervised(build_classifier(backbone, NUM_CLASSES, shape)), (images, labels)
            else:
                teacher = build_classifier(backbone, NUM_CLASSES, shape, name="teacher")
                student = build_classifier(backbone, NUM_CLASSES, shape, name="student")
                model = Distiller(teacher, student, LossConfig())
                batch = ({"hr": images, "lr": images}, labels)
            fns.append(_train_function(model, batch, jit))
        pairs[f"{backbone}@{size}/{name}"] = tuple(fns)
    return pairs


def run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    ops = {name: (tf.function(fn), tf.function(fn, jit_compile=True)) for name, fn in op_cases().items()}
    results: dict = {"ops_forward_backward": _pairs_ratio(ops, rounds=2 if quick else 5,
                                                          repeats=1 if quick else 3, label="op")}
    steps = {}
    for backbone in ("vgg_tiny",) if quick else ("vgg_tiny", "vgg16"):
        steps.update(step_pairs(backbone, 128))
    results["train_steps"] = _pairs_ratio(steps, rounds=2 if quick else 3, repeats=1 if quick else 2,
                                          label="step")
    results["augmentation_warp"] = warp_xla(rounds=2 if quick else 5, repeats=1 if quick else 3)
    results["summary"] = {
        "train_step_xla_over_plain_time": {k: v["xla_over_plain_time"]
                                           for k, v in results["train_steps"].items()},
        "op_xla_over_plain_time": {k: v["xla_over_plain_time"]
                                   for k, v in results["ops_forward_backward"].items()},
        "warp_xla_speedup": {k: v["xla_speedup"] for k, v in results["augmentation_warp"].items()
                             if isinstance(v, dict)},
    }
    return results
