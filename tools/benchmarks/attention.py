"""Cost of the AT+ attention term in a compiled student step (forward + backward + Adam update).

Baseline: CE + 0.1 FM (teacher forward included). Variants add 10 * AT+ with the maps of every class or
of the target class, first or second order (the teacher's maps are always first order, constants).
All variants run round-robin in one process on the same batch, after warm-up steps, and are reported
as the ratio of their median step time to the baseline's.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import tensorflow as tf

from ird_tf.attention import attention_maps
from ird_tf.config import LossConfig
from ird_tf.losses import TERMS, TermInputs
from ird_tf.models import build_classifier

BATCH = 8
NUM_CLASSES = 4
CASES = {  # name: (classes, second_order); classes None = no attention term
    "ce_fm": (None, None),
    "at_target_1st": ("target", False),
    "at_target_2nd": ("target", True),
    "at_all_1st": ("all", False),
    "at_all_2nd": ("all", True),
}
SETUPS = (("vgg_tiny", 128), ("vgg16", 128))


def make_step(teacher, student, optimizer, classes, second_order):
    cfg = LossConfig()
    weights = {"ce": 1.0, "fm": 0.1, **({"at": 10.0} if classes else {})}

    @tf.function
    def step(hr, lr, labels):
        which = "all" if classes == "all" else labels
        if classes is None:
            t_out, t_maps = teacher(hr, training=False), None
        else:
            t_out, t_maps = attention_maps(teacher, hr, classes=which, second_order=False)
            t_maps = tf.stop_gradient(t_maps)
        with tf.GradientTape() as tape:
            if classes is None:
                s_out, s_maps = student(lr, training=True), None
            else:
                s_out, s_maps = attention_maps(student, lr, classes=which, second_order=second_order,
                                               training=True)
            inputs = TermInputs(labels, s_out, t_out, s_maps, t_maps)
            loss = tf.add_n([w * TERMS[name](inputs, cfg) for name, w in weights.items()])
        grads = tape.gradient(loss, student.trainable_variables)
        optimizer.apply(grads, student.trainable_variables)
        return loss

    return step


def time_setup(backbone: str, size: int, steps: int, warmup: int) -> dict:
    keras.utils.set_random_seed(0)
    teacher = build_classifier(backbone, NUM_CLASSES, (size, size, 3), name="teacher")
    teacher.trainable = False
    student = build_classifier(backbone, NUM_CLASSES, (size, size, 3), name="student")
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(student.trainable_variables)
    rng = np.random.default_rng(0)
    hr = tf.constant(rng.random((BATCH, size, size, 3), dtype=np.float32))
    lr = tf.image.resize(tf.nn.avg_pool2d(hr, 4, 4, "VALID"), (size, size), "bilinear")  # 2.5x view
    labels = tf.constant(np.arange(BATCH) % NUM_CLASSES, tf.int32)
    steps_fn = {name: make_step(teacher, student, optimizer, *case) for name, case in CASES.items()}
    for fn in steps_fn.values():
        for _ in range(warmup):
            fn(hr, lr, labels).numpy()
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(steps):
        for name, fn in steps_fn.items():
            start = time.perf_counter()
            fn(hr, lr, labels).numpy()
            times[name].append(time.perf_counter() - start)
    median = {name: float(np.median(t)) for name, t in times.items()}
    return {
        "image_size": size, "batch": BATCH, "steps": steps, "warmup": warmup,
        "median_step_s": {k: round(v, 4) for k, v in median.items()},
        "images_per_s": {k: round(BATCH / v, 2) for k, v in median.items()},
        "ratio_vs_ce_fm": {k: round(v / median["ce_fm"], 3) for k, v in median.items()},
    }


def run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    steps, warmup = (3, 1) if quick else (10, 2)
    tf.get_logger().setLevel("ERROR")  # five step functions traced once each read as "retracing"
    results = {}
    for backbone, size in SETUPS:
        res = time_setup(backbone, size, steps, warmup)
        results[f"{backbone}@{size}"] = res
        ratios = "  ".join(f"{k}={v:.2f}x" for k, v in res["ratio_vs_ce_fm"].items())
        print(f"{backbone} {size}px batch {BATCH}: base {res['median_step_s']['ce_fm']:.3f} s/step; {ratios}",
              flush=True)
    return results
