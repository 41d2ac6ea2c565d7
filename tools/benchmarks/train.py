"""Train-step speed of the Teacher and the Distiller (CE, CE+FM, CE+FM+AT+ for target and all classes).

Each configuration runs the compiled Keras train function (``model.make_train_function()``) on one
cached batch of random images after a warm-up; configurations are timed in interleaved rounds (median
step time per round, then the median over rounds), and the ratios (AT+ step / FM step, target: <= 1.10)
are medians of within-round ratios: figures measured side by side on the same, possibly busy, machine.
Float32, the default strategy, no XLA (``jit_compile=True`` makes these steps slower on CPU: see the
``xla`` section).

The peak memory (max RSS) of the default ``python -m ird_tf.experiments.distill --res 2.5`` run, teacher
included, is measured in a child process (target: under 4 GB).

The authors' PyTorch step is measured side by side with the Distiller's by the ``peer`` section, not here
(``summary.pytorch_reference_img_s`` is kept as a key and is null).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ird_tf.config import LossConfig
from ird_tf.models import build_classifier
from ird_tf.training import Distiller, Supervised

NUM_CLASSES = 4
LOSSES = {
    "distill_ce": LossConfig(ce=1.0, fm=0.0, at=0.0),
    "distill_ce_fm": LossConfig(ce=1.0, fm=0.1, at=0.0),
    "distill_ce_fm_at_target": LossConfig(ce=1.0, fm=0.1, at=10.0, at_classes="target"),
    "distill_ce_fm_at_all": LossConfig(ce=1.0, fm=0.1, at=10.0, at_classes="all"),
}


def _models(backbone: str, size: int) -> dict[str, keras.Model]:
    """The Teacher and one Distiller per loss, compiled (Adam), sharing a frozen teacher network."""
    keras.utils.set_random_seed(0)
    shape = (size, size, 3)
    models: dict[str, keras.Model] = {
        "teacher": Supervised(build_classifier(backbone, NUM_CLASSES, shape, name="teacher_trained"))
    }
    frozen = build_classifier(backbone, NUM_CLASSES, shape, name="teacher")
    student = build_classifier(backbone, NUM_CLASSES, shape, name="student")
    models.update({name: Distiller(frozen, student, cfg) for name, cfg in LOSSES.items()})
    for model in models.values():
        model.compile(optimizer=keras.optimizers.Adam(1e-4))
    return models


def _stepper(model: keras.Model, batch):
    """A function running one compiled train step and waiting for its result."""
    model.make_train_function()
    train_function = model.train_function
    iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())

    def step() -> float:
        start = time.perf_counter()
        logs = train_function(iterator)
        float(logs["loss"])  # synchronise
        return time.perf_counter() - start

    return step


def bench_backbone(backbone: str, size: int, batch_size: int, *, warmup: int, rounds: int,
                   steps: int) -> dict:
    rng = np.random.default_rng(0)
    images = rng.random((batch_size, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
    batch = ({"hr": images, "lr": images}, labels)
    steppers = {name: _stepper(model, batch) for name, model in _models(backbone, size).items()}
    compile_s = {}
    for name, step in steppers.items():
        start = time.perf_counter()
        for _ in range(warmup):
            step()
        compile_s[name] = round(time.perf_counter() - start, 2)
    rounds_median: list[dict[str, float]] = []
    for _ in range(rounds):  # interleaved: every configuration sees the same machine conditions
        rounds_median.append({name: statistics.median([step() for _ in range(steps)])
                              for name, step in steppers.items()})
    median = {name: statistics.median(r[name] for r in rounds_median) for name in steppers}
    out = {f"{name}_img_s": round(batch_size / s, 2) for name, s in median.items()}
    # the fastest round: what the step does when other processes leave the CPU alone
    out["best_round_img_s"] = {name: round(batch_size / min(r[name] for r in rounds_median), 2)
                               for name in steppers}
    for key, name in (("at_target_over_fm_step", "distill_ce_fm_at_target"),
                      ("at_all_over_fm_step", "distill_ce_fm_at_all")):
        # median over rounds of the ratio within a round: robust to the load drifting between rounds
        out[key] = round(statistics.median(r[name] / r["distill_ce_fm"] for r in rounds_median), 3)
    out["warmup_seconds"] = compile_s
    out["steps_timed_per_config"] = rounds * steps
    return out


def distill_peak_memory(*, quick: bool) -> dict:
    """Peak resident memory (max RSS) of the default ``distill --res 2.5`` run, teacher included, in a
    child process in a fresh directory (the synthetic dataset in ``.cache`` is reused if present).
    ``quick``: one epoch each."""
    extra = ["--epochs", "1", "--teacher-epochs", "1"] if quick else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cache = Path(__file__).resolve().parents[2] / ".cache"
    with tempfile.TemporaryDirectory(prefix="ird_bench_") as out:  # runs/ and saved_models/ go here
        cmd = [sys.executable, "-m", "ird_tf.experiments.distill", "--res", "2.5", "--output-dir", "runs",
               "--cache-dir", str(cache), "--verbose", "0", *extra]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:  # a larger child ran earlier in this process: the figure would be its peak
        raise RuntimeError("distill_peak_memory must run before any larger child process")
    return {"command": "python -m " + " ".join(cmd[2:]).replace(str(cache), ".cache"),
            "peak_rss_mb": round(peak / 1024, 1), "target_mb": 4096, "wall_seconds": round(seconds, 1)}


def run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    print("  peak memory of the default distill run (teacher + student)...", flush=True)
    results = {"distill_default_run": distill_peak_memory(quick=quick)}
    print(f"  {results['distill_default_run']}", flush=True)
    plans = (
        ("cpu_preset_vgg_tiny_128px_b8", "vgg_tiny", 128, dict(warmup=2, rounds=2 if quick else 5,
                                                                steps=3 if quick else 10)),
        ("vgg16_128px_b8", "vgg16", 128, dict(warmup=2, rounds=2 if quick else 6, steps=1 if quick else 4)),
    )
    for key, backbone, size, plan in plans:
        print(f"  {key}: {plan}", flush=True)
        results[key] = bench_backbone(backbone, size, 8, **plan)
        print(f"  {key}: {results[key]}", flush=True)
    vgg = results["vgg16_128px_b8"]
    results["summary"] = {
        "at_over_fm_target_le_1.10": {
            k: {"target": r["at_target_over_fm_step"], "all": r["at_all_over_fm_step"]}
            for k, r in results.items() if k != "distill_default_run"
        },
        "vgg16_128px_b8_distill_ce_fm_at_all_img_s": vgg["distill_ce_fm_at_all_img_s"],
        "vgg16_128px_b8_distill_ce_fm_at_target_img_s": vgg["distill_ce_fm_at_target_img_s"],
        "vgg16_128px_b8_distill_ce_fm_at_all_img_s_best_round":
            vgg["best_round_img_s"]["distill_ce_fm_at_all"],
        "pytorch_reference_img_s": None,  # measured side by side by the `peer` section
        "distill_default_run_peak_rss_mb": results["distill_default_run"]["peak_rss_mb"],
        "peak_rss_mb_of_this_benchmark": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return results
