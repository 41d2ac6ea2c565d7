"""The train steps measured against the machine: what share of this CPU's convolution throughput they use.

Measured in one process, in interleaved rounds (each round: the convolution op, the matmul op, then
every step), with TensorFlow's thread pools as the steps use them:

- convolution throughput: ``tf.nn.conv2d`` 3x3, 256 -> 256 channels, 32x32, batch 8, float32, NHWC
  (a middle layer of VGG16 at 128 px), compiled with ``tf.function``; matmul: 2048 x 2048 float32.
- FLOPs per image of each step, counted from the model's layers (``common.model_forward_flops``; a
  multiply-add is 2 FLOPs): teacher step = 3 F (forward + backward, backward = 2 x forward);
  Distiller CE+FM = F (frozen teacher, forward) + 3 F (student); CE+FM+AT+ adds the attention term,
  bounded from above (``attention_flops_bound``; its share of the step is in the results).
- share = step FLOP/s / convolution FLOP/s, the median over rounds of the within-round share.

What could raise it: the inter-op thread pool (TensorFlow runs independent ops of a step, such as the
teacher's and the student's branches or a convolution's two gradients, concurrently, each with every
core): the same VGG16 Distiller step is timed in child processes with ``TF_NUM_INTEROP_THREADS`` /
``TF_NUM_INTRAOP_THREADS`` set (they must be set before TensorFlow starts), one child per setting per
round; the data layout (the convolution op in NCHW against NHWC); and what the profiler shows besides
the convolutions: one step traced with ``tf.profiler``, its op time summed by op type (that summary is
kept in the results; the trace is not).
"""

from __future__ import annotations

import collections
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import conv2d_flops, interleaved_rounds, matmul_flops, model_forward_flops

BATCH = 8
NUM_CLASSES = 4
CONV_SHAPE = dict(batch=BATCH, size=32, c_in=256, c_out=256)
MATMUL_N = 2048
SETUPS = (("vgg16", 128), ("vgg_tiny", 128))
THREAD_SETTINGS = {"default": {}, "inter1_intra2": {"TF_NUM_INTEROP_THREADS": "1",
                                                    "TF_NUM_INTRAOP_THREADS": "2"}}


def conv_op(batch: int, size: int, c_in: int, c_out: int, data_format: str = "NHWC"):
    """(function running the op once and waiting, FLOPs of one call)."""
    rng = np.random.default_rng(0)
    shape = (batch, size, size, c_in) if data_format == "NHWC" else (batch, c_in, size, size)
    x = tf.constant(rng.random(shape, dtype=np.float32))
    k = tf.constant(rng.random((3, 3, c_in, c_out), dtype=np.float32) * 0.01)
    fn = tf.function(lambda: tf.nn.conv2d(x, k, 1, "SAME", data_format=data_format))
    return (lambda: fn().numpy()), batch * conv2d_flops(size, size, 3, 3, c_in, c_out, bias=False)


def matmul_op(n: int):
    rng = np.random.default_rng(0)
    a = tf.constant(rng.random((n, n), dtype=np.float32))
    b = tf.constant(rng.random((n, n), dtype=np.float32))
    fn = tf.function(lambda: tf.matmul(a, b))
    return (lambda: fn().numpy()), matmul_flops(n, n, n)


def attention_flops_bound(classifier: keras.Model, num_classes: int = NUM_CLASSES) -> int:
    """An upper bound of the AT+ term's FLOPs per image (all classes, teacher and student, second order).

    Per map stack: the head on ``num_classes`` stacked copies of the tap (ReLU, max-pool, mean, dense),
    its gradient to the tap, the channel weights and the map product (``einsum`` over 2 K channels).
    Each elementwise pass over a copy of the tap is counted as 10 FLOPs per value (generous: ReLU,
    pooling, mean and their gradients are 1-4 each); the student's stack is counted 3 times (forward,
    backward, the second-order backward) on top of the teacher's once."""
    _, h, w, k = classifier.get_layer("features").output.shape
    elementwise = 10 * num_classes * h * w * k
    head = num_classes * num_classes * 2 * k * 3  # dense forward + its two gradients, per copy
    maps = 2 * h * w * (2 * k) * num_classes
    per_stack = elementwise + head + maps
    return 4 * per_stack


def step_flops(backbone: str, size: int) -> dict:
    from ird_tf.models import build_classifier

    model = build_classifier(backbone, NUM_CLASSES, (size, size, 3))
    forward = model_forward_flops(model)["total"]
    at = attention_flops_bound(model)
    return {"forward": forward, "teacher": 3 * forward, "distill_ce_fm": 4 * forward,
            "distill_ce_fm_at_all": 4 * forward + at, "attention_term_bound": at,
            "attention_term_bound_share": round(at / (4 * forward), 6)}


def _steppers(backbone: str, size: int) -> dict:
    """Compiled train steps (teacher, Distiller CE+FM and CE+FM+AT+ all classes) on one fixed batch."""
    from ird_tf.config import LossConfig
    from ird_tf.models import build_classifier
    from ird_tf.training import Distiller, Supervised

    keras.utils.set_random_seed(0)
    shape = (size, size, 3)
    frozen = build_classifier(backbone, NUM_CLASSES, shape, name="teacher")
    student = build_classifier(backbone, NUM_CLASSES, shape, name="student")
    models = {"teacher": Supervised(build_classifier(backbone, NUM_CLASSES, shape, name="teacher_trained")),
              "distill_ce_fm": Distiller(frozen, student, LossConfig(ce=1.0, fm=0.1, at=0.0)),
              "distill_ce_fm_at_all": Distiller(frozen, student, LossConfig())}
    rng = np.random.default_rng(0)
    images = rng.random((BATCH, size, size, 3), dtype=np.float32)
    labels = (np.arange(BATCH) % NUM_CLASSES).astype(np.int32)
    out = {}
    for name, model in models.items():
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
        model.make_train_function()
        batch = ({"hr": images, "lr": images}, labels) if name != "teacher" else (images, labels)
        iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
        out[name] = (lambda fn=model.train_function, it=iterator: float(fn(it)["loss"]))
    return out


def shares(*, rounds: int, repeats: int) -> dict:
    conv, conv_f = conv_op(**CONV_SHAPE)
    matmul, matmul_f = matmul_op(MATMUL_N)
    ops = {"conv": conv, "matmul": matmul}
    flops = {"conv": conv_f, "matmul": matmul_f}
    steps, step_f = {}, {}
    for backbone, size in SETUPS:
        f = step_flops(backbone, size)
        for name, fn in _steppers(backbone, size).items():
            key = f"{backbone}@{size}/{name}"
            steps[key], step_f[key] = fn, f[name] * BATCH
    every = {**ops, **steps}
    for fn in every.values():  # warm-up: tracing and the first (slow) runs
        fn()
        fn()
    def show(i, medians):
        print(f"    round {i + 1}: conv {conv_f / medians['conv'] / 1e9:.1f} GFLOP/s", flush=True)

    per_round = interleaved_rounds(every, rounds=rounds, repeats=repeats, on_round=show)
    gflops = {k: [flops[k] / r[k] / 1e9 for r in per_round] for k in ops}
    out: dict = {
        "conv_op": {**CONV_SHAPE, "kernel": 3, "data_format": "NHWC",
                    "gflop_per_call": round(conv_f / 1e9, 3)},
        "matmul_op": {"n": MATMUL_N, "gflop_per_call": round(matmul_f / 1e9, 3)},
        "rounds": rounds, "repeats_per_round": repeats,
        "conv_gflop_s": round(statistics.median(gflops["conv"]), 1),
        "matmul_gflop_s": round(statistics.median(gflops["matmul"]), 1),
        "conv_gflop_s_per_round": [round(v, 1) for v in gflops["conv"]],
        "steps": {},
    }
    for backbone, size in SETUPS:
        f = step_flops(backbone, size)
        res = out["steps"][f"{backbone}@{size}"] = {
            "forward_gflop_per_image": round(f["forward"] / 1e9, 4),
            "attention_term_bound_share_of_distill_flops": f["attention_term_bound_share"],
            "gflop_per_image": {}, "img_s": {}, "step_gflop_s": {}, "share_of_conv": {}}
        for name in ("teacher", "distill_ce_fm", "distill_ce_fm_at_all"):
            key = f"{backbone}@{size}/{name}"
            within = [step_f[key] / r[key] / (conv_f / r["conv"]) for r in per_round]
            res["gflop_per_image"][name] = round(f[name] / 1e9, 4)
            res["img_s"][name] = round(statistics.median(BATCH / r[key] for r in per_round), 2)
            rate = statistics.median(step_f[key] / r[key] / 1e9 for r in per_round)
            res["step_gflop_s"][name] = round(rate, 1)
            res["share_of_conv"][name] = round(statistics.median(within), 3)
    return out


def layout_check() -> dict:
    """The convolution op in NCHW against NHWC (interleaved): is the other data layout any faster here?"""
    nhwc, f = conv_op(**CONV_SHAPE)
    try:
        nchw, _ = conv_op(**CONV_SHAPE, data_format="NCHW")
        nchw()
    except (tf.errors.OpError, ValueError) as e:
        return {"nchw": f"not run: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    for fn in (nhwc, nchw, nhwc, nchw):
        fn()
    rounds = interleaved_rounds({"nhwc": nhwc, "nchw": nchw}, rounds=3, repeats=3)
    return {k: round(statistics.median(f / r[k] / 1e9 for r in rounds), 1) for k in ("nhwc", "nchw")} | {
        "nchw_over_nhwc_speed": round(statistics.median(r["nhwc"] / r["nchw"] for r in rounds), 3)}


def profile_summary(backbone: str = "vgg16", size: int = 128, top: int = 12) -> dict:
    """One traced Distiller CE+FM+AT+ step: op time summed by op type over the compute threads, and
    each type's share of that sum (ops of concurrent branches overlap, so the sum exceeds the wall time)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    step = _steppers(backbone, size)["distill_ce_fm_at_all"]
    step()
    step()
    with tempfile.TemporaryDirectory(prefix="ird_bench_profile_") as logdir:
        tf.profiler.experimental.start(logdir)
        step()
        tf.profiler.experimental.stop()
        files = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(files[0]).read_bytes())
    by_type: collections.Counter = collections.Counter()
    wall = 0.0
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if line.name == "python" and name == "multi_step_on_iterator":
                    wall += event.duration_ps / 1e12
                if line.name.startswith("tf_Compute") and ":" in name and not name.startswith("Executor"):
                    by_type[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    total = sum(by_type.values())
    conv = sum(v for k, v in by_type.items() if "Conv2D" in k)
    return {"step": f"{backbone}@{size} distill_ce_fm_at_all", "wall_s": round(wall, 3),
            "op_time_sum_s": round(total, 3), "convolution_share_of_op_time": round(conv / total, 3),
            "top_op_types": {k: round(v / total, 3) for k, v in by_type.most_common(top)}}


CHILD_SCRIPT = """
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from benchmarks.machine import _steppers
step = _steppers("vgg16", 128)["distill_ce_fm_at_all"]
step(); step()
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(json.dumps({"median_s": statistics.median(times)}))
"""


def thread_settings(*, rounds: int, steps: int) -> dict:
    """The VGG16 Distiller CE+FM+AT+ step at 128 px in one child process per thread setting and round."""
    tools = str(Path(__file__).resolve().parents[1])
    per_round = []
    for i in range(rounds):
        medians = {}
        for name, env in THREAD_SETTINGS.items():
            proc = subprocess.run([sys.executable, "-c", CHILD_SCRIPT, tools, str(steps)],
                                  capture_output=True, text=True, check=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
            medians[name] = json.loads(proc.stdout.strip().splitlines()[-1])["median_s"]
        per_round.append(medians)
        rates = ", ".join(f"{k} {BATCH / v:.2f} img/s" for k, v in medians.items())
        print(f"    threads round {i + 1}: {rates}", flush=True)
    return {"settings": THREAD_SETTINGS, "rounds": rounds, "steps_per_child": steps,
            "img_s_per_round": {k: [round(BATCH / r[k], 2) for r in per_round] for k in THREAD_SETTINGS},
            "inter1_speedup": round(statistics.median(r["default"] / r["inter1_intra2"]
                                                      for r in per_round), 3)}


def run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    print("  conv/matmul throughput and each step's share of it...", flush=True)
    results = shares(rounds=2 if quick else 5, repeats=1 if quick else 2)
    print(f"  conv {results['conv_gflop_s']} GFLOP/s, matmul {results['matmul_gflop_s']} GFLOP/s", flush=True)
    for key, res in results["steps"].items():
        print(f"  {key}: img/s {res['img_s']}; share of conv {res['share_of_conv']}", flush=True)
    results["layout"] = layout_check()
    print(f"  layout: {results['layout']}", flush=True)
    results["profile"] = profile_summary()
    print(f"  profile: {results['profile']}", flush=True)
    results["threads"] = thread_settings(rounds=1 if quick else 3, steps=2 if quick else 4)
    vgg = results["steps"]["vgg16@128"]
    results["summary"] = {
        "conv_gflop_s": results["conv_gflop_s"], "matmul_gflop_s": results["matmul_gflop_s"],
        "vgg16_distill_ce_fm_at_all_share_of_conv": vgg["share_of_conv"]["distill_ce_fm_at_all"],
        "target_share": 0.5, "inter_op_1_speedup_vgg16_distill": results["threads"]["inter1_speedup"],
    }
    return results
