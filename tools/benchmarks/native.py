"""Native Students' inference against the Teacher's: measured images/s ratio next to the FLOPs ratio.

The Teacher (vgg_tiny, 128 px) and the 1.25x native Students (16 px: the plain vgg_tiny, vgg_tiny_keep1,
vgg_tiny_keep3 and the depthwise-separable vgg_tiny_keep2_sep, vgg_tiny_keep3_sep) run in interleaved
rounds at batch 32, 256 and 1, through three compiled inference functions of the logits (as served):

- ``function``: ``tf.function(reduce_retracing=True)`` (what ``evaluation.cost.images_per_second`` uses);
- ``signature``: ``tf.function`` with a fixed ``input_signature`` ``[None, S, S, 3]`` (one trace);
- ``xla``: the same with ``jit_compile=True``.

``overhead_ms`` is the time of a compiled call that does nothing but return its input (the floor of any
call: Python, the function's dispatch, the tensor's transfer back), measured in the same rounds, and
``student_over_overhead`` how many such floors one Student call takes. A figure is the median over
rounds of the within-round ratio; images/s are batch / median seconds.
"""

from __future__ import annotations

import statistics

import keras
import tensorflow as tf

from benchmarks.common import interleaved_rounds, within_round_ratios

TEACHER = ("vgg_tiny", 128)
STUDENTS = (("vgg_tiny", 16), ("vgg_tiny_keep1", 16), ("vgg_tiny_keep3", 16), ("vgg_tiny_keep2_sep", 16),
            ("vgg_tiny_keep3_sep", 16))
BATCHES = (32, 256, 1)
PATHS = ("function", "signature", "xla")


def _infer(model, size: int, path: str):
    if path == "function":
        fn = tf.function(lambda x: model(x, training=False)["logits"], reduce_retracing=True)
    else:
        fn = tf.function(lambda x: model(x, training=False)["logits"], jit_compile=path == "xla",
                         input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    return fn


def run(args) -> dict:
    from ird_tf.evaluation.cost import flops_per_image
    from ird_tf.models import build_classifier

    rounds, repeats = (3, 3) if args.quick else (7, 5)
    keras.utils.set_random_seed(0)
    models = {f"{b}@{s}": (build_classifier(b, 4, (s, s, 3)), s) for b, s in (TEACHER, *STUDENTS)}
    flops = {name: flops_per_image(m) for name, (m, _) in models.items()}
    teacher = f"{TEACHER[0]}@{TEACHER[1]}"
    out: dict = {"flops_per_image": flops, "params": {n: m.count_params() for n, (m, _) in models.items()},
                 "flops_ratio_teacher_over": {n: flops[teacher] / f for n, f in flops.items()
                                              if n != teacher}, "batches": {}}
    identity = tf.function(tf.identity)
    for batch in BATCHES:
        steps = {}
        for name, (model, size) in models.items():
            x = tf.random.stateless_uniform([batch, size, size, 3], seed=[0, 0])
            for path in PATHS:
                fn = _infer(model, size, path)
                fn(x).numpy()  # trace (and compile) outside the timing
                fn(x).numpy()
                steps[f"{name}/{path}"] = lambda fn=fn, x=x: fn(x).numpy()
        tiny = tf.random.stateless_uniform([batch, 16, 16, 3], seed=[0, 0])
        identity(tiny).numpy()
        steps["overhead"] = lambda tiny=tiny: identity(tiny).numpy()
        res = interleaved_rounds(steps, rounds=rounds, repeats=repeats)
        med = {k: statistics.median(r[k] for r in res) for k in steps}
        fig: dict = {"images_per_s": {k: round(batch / v, 1) for k, v in med.items() if k != "overhead"},
                     "overhead_ms": round(med["overhead"] * 1e3, 4), "measured_ratio_vs_teacher": {},
                     "ratio_over_flops_ratio": {}, "student_over_overhead": {}}
        for path in PATHS:
            for name in models:
                if name == teacher:
                    continue
                ratio = statistics.median(within_round_ratios(res, f"{teacher}/{path}", f"{name}/{path}"))
                fig["measured_ratio_vs_teacher"][f"{name}/{path}"] = round(ratio, 2)
                fig["ratio_over_flops_ratio"][f"{name}/{path}"] = round(
                    ratio / out["flops_ratio_teacher_over"][name], 3)
                fig["student_over_overhead"][f"{name}/{path}"] = round(
                    statistics.median(within_round_ratios(res, f"{name}/{path}", "overhead")), 1)
        out["batches"][str(batch)] = fig
        print(f"batch {batch}: overhead {fig['overhead_ms']} ms; teacher/student images/s ratio "
              f"{fig['measured_ratio_vs_teacher']}", flush=True)
    out["threads"] = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                      "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    return out
