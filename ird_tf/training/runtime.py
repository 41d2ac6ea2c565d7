"""Process-wide settings of a run: seeds, precision policy, XLA, and the tf.distribute strategy.

Order matters, so the command line does it in this order, before building any model:
``configure_cpu_devices`` (only for ``mirrored`` on a CPU-only machine; TensorFlow fixes its devices the
first time it touches them), ``make_strategy`` (``MultiWorkerMirroredStrategy`` must be created before
other TensorFlow ops), ``set_seed``, ``set_precision``; then models, optimizer and ``compile`` inside
``strategy.scope()``.

Multi-worker training: every worker runs the same command with its own ``TF_CONFIG``, e.g. for worker 0 of
two ``{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}``.
The global batch (``data.batch_size``) is split over all replicas of all workers; worker 0 (or the
``chief``) writes the run directory, the others write theirs under ``<run_dir>/workers/``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import keras
import tensorflow as tf

from ird_tf.config import PRECISIONS, STRATEGIES, ConfigError


def set_seed(seed: int) -> None:
    """Sets what ``keras.utils.set_random_seed`` sets (Python's and NumPy's generators, Keras's global
    seed and generator, TensorFlow's global seed), without clearing TensorFlow's kernel cache.

    ``tf.random.set_seed`` clears that cache to restart stateful random kernels, which no model or
    pipeline here has (the augmentation is stateless, the shuffles are seeded, Keras's initializers draw
    their seeds from Python's generator). With them it drops every instantiated function: the models a
    study keeps (``runs.pool``) then instantiated their train, validation and recalibration functions
    again in every run (a kept native Student's first train step: 0.42 s against 0.10 s). The test
    ``tests/training/test_runtime_seed.py`` checks each seed against Keras's call."""
    import random

    import numpy as np
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils
    from tensorflow.python.eager import context

    seed = int(seed)
    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    ctx = context.context()
    ctx._seed, ctx._rng = seed, random.Random(seed)  # tf.random.set_seed's own two, less the cache clear


def set_precision(policy: str) -> None:
    """Sets the global Keras dtype policy. Call it before building models: layers take the policy that
    is global when they are created. Logits stay float32 (the classifier's ``logits`` layer)."""
    if policy not in PRECISIONS:
        raise ConfigError(f"run.precision={policy!r} is not accepted; expected one of {list(PRECISIONS)}")
    keras.mixed_precision.set_global_policy(policy)


JIT_CPU_NOTE = (
    "note: --jit (run.jit) makes the train step slower on a machine without a GPU: XLA's CPU code for the "
    "max-pool gradient (select-and-scatter) is many times slower than TensorFlow's kernel, and its "
    "convolutions are slower than TensorFlow's oneDNN ones (measured by `python tools/benchmark.py xla`). "
    "The option is meant for GPUs; on this machine leave it off."
)


def jit_note(enabled: bool, gpus: list | None = None) -> str | None:
    """What to tell a user who asks for XLA: ``JIT_CPU_NOTE`` when ``enabled`` and TensorFlow sees no GPU
    (``gpus``: the physical GPUs, looked up when None), else None."""
    if not enabled:
        return None
    gpus = tf.config.list_physical_devices("GPU") if gpus is None else gpus
    return None if gpus else JIT_CPU_NOTE


def set_jit(enabled: bool) -> bool:
    """Turns TensorFlow's XLA auto-clustering on or off and returns ``enabled``, to be passed on as
    ``model.compile(jit_compile=...)`` (Keras's own switch for the train step). On a machine without a
    GPU, enabling it prints :data:`JIT_CPU_NOTE` to stderr (XLA is slower there; the run goes on)."""
    note = jit_note(enabled)
    if note:
        print(note, file=sys.stderr, flush=True)
    tf.config.optimizer.set_jit("autoclustering" if enabled else False)
    return bool(enabled)


def configure_cpu_devices(n: int) -> list[str]:
    """Splits the first physical CPU into ``n`` logical devices so ``MirroredStrategy`` has ``n``
    replicas on a CPU-only machine. Must run before TensorFlow initialises its devices (before any
    model, tensor or dataset is created). Returns the logical CPU device names."""
    cpus = tf.config.list_physical_devices("CPU")
    config = [tf.config.LogicalDeviceConfiguration() for _ in range(int(n))]
    try:
        tf.config.set_logical_device_configuration(cpus[0], config)
    except RuntimeError as e:
        current = tf.config.list_logical_devices("CPU")
        if len(current) == n:
            return [d.name for d in current]
        raise RuntimeError(
            f"configure_cpu_devices({n}): TensorFlow has already initialised {len(current)} CPU "
            "device(s); call it at the start of the program, before building models or datasets"
        ) from e
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def read_tf_config() -> dict:
    """The parsed ``TF_CONFIG`` environment variable; ConfigError naming what is wrong with it."""
    raw = os.environ.get("TF_CONFIG")
    example = '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}'
    if not raw:
        raise ConfigError(
            f"run.strategy='multiworker' needs the TF_CONFIG environment variable on every worker, "
            f"e.g. TF_CONFIG='{example}'"
        )
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}); expected e.g. {example}") from e
    cluster, task = (cfg.get("cluster"), cfg.get("task")) if isinstance(cfg, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise ConfigError(f"TF_CONFIG needs 'cluster' and 'task' mappings; expected e.g. {example}")
    members = cluster.get(task.get("type"))
    index = task.get("index")
    if not isinstance(members, list) or not isinstance(index, int) or not 0 <= index < len(members):
        raise ConfigError(
            f"TF_CONFIG task {task!r} is not a member of cluster {cluster!r}; expected e.g. {example}"
        )
    return cfg


def is_chief() -> bool:
    """True unless this process is a non-chief member of a multi-worker cluster (``TF_CONFIG``)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        cfg = json.loads(raw)
        cluster, task = cfg.get("cluster", {}), cfg.get("task", {})
    except (json.JSONDecodeError, AttributeError):
        return True
    if task.get("type") == "chief":
        return True
    return "chief" not in cluster and task.get("type") == "worker" and task.get("index", 0) == 0


def task_name() -> str:
    """``<type>-<index>`` of this process in ``TF_CONFIG`` (``chief-0`` without one)."""
    try:
        task = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {})
    except (json.JSONDecodeError, AttributeError):
        task = {}
    return f"{task.get('type', 'chief')}-{task.get('index', 0)}"


def worker_dir(run_dir: Path | str) -> Path:
    """Where this process writes a run's files: ``run_dir`` on the chief, ``run_dir/workers/<task>`` on the
    other workers of a multi-worker cluster (they do the same work; their files must not collide)."""
    run_dir = Path(run_dir)
    return run_dir if is_chief() else run_dir / "workers" / task_name()


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """``default``: the current (no-op) strategy. ``mirrored``: ``MirroredStrategy`` over the visible GPUs,
    or over the logical CPU devices (see ``configure_cpu_devices``) when there is no GPU.
    ``multiworker``: ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``.

    Keras's ``fit`` runs ``train_step`` once per replica on its share of the global batch and sums the
    gradients over replicas; the custom steps therefore divide their loss by the number of replicas
    before ``optimizer.scale_loss``/``apply`` (see ``Supervised.train_step``)."""
    if name not in STRATEGIES:
        raise ConfigError(f"run.strategy={name!r} is not accepted; expected one of {list(STRATEGIES)}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    read_tf_config()
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


__all__ = [
    "set_seed", "set_precision", "set_jit", "configure_cpu_devices", "make_strategy", "read_tf_config",
    "is_chief", "task_name", "worker_dir",
]
