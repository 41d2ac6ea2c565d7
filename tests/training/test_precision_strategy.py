"""Mixed precision (loss scaling, float32 maths) in-process; MirroredStrategy on two logical CPUs and
MultiWorkerMirroredStrategy with two local workers in real subprocesses; runtime errors."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from ird_tf.config import ConfigError, LossConfig
from ird_tf.models import build_classifier
from ird_tf.training import Distiller, Supervised, runtime

S, B, C = 32, 8, 4


def batch(seed=0):
    rng = np.random.default_rng(seed)
    x = {"hr": rng.random((B, S, S, 3), dtype=np.float32), "lr": rng.random((B, S, S, 3), dtype=np.float32)}
    return x, rng.integers(0, C, B).astype(np.int32)


@pytest.fixture
def policy(request):
    runtime.set_precision(request.param)
    try:
        yield request.param
    finally:
        runtime.set_precision("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision_steps_scale_the_loss_and_keep_float32_maths(policy):
    keras.utils.set_random_seed(5)
    teacher = build_classifier("vgg_tiny", C, (S, S, 3), name="t")
    student = build_classifier("vgg_tiny", C, (S, S, 3), name="s")
    compute = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}[policy]
    assert student.get_layer("features").output.dtype == compute
    model = Distiller(teacher, student, LossConfig(ce=1.0, fm=0.1, at=10.0))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    scaled_by_keras = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled_by_keras == (policy == "mixed_float16")

    x, y = batch(0)
    t0 = [v.numpy().copy() for v in teacher.weights]
    s0 = [v.numpy().copy() for v in student.trainable_variables]
    for _ in range(4):  # float16: the first steps may overflow at the initial scale 2^15 and be skipped
        logs = model.train_on_batch(x, y, return_dict=True)
        assert all(np.isfinite(v) for v in logs.values()), logs
    assert int(model.optimizer.iterations) >= 1
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(s0, student.trainable_variables, strict=True))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(t0, teacher.weights, strict=True))

    _, scaled, loss, parts, s_out, t_out = model.forward_losses(x, tf.constant(y))
    assert loss.dtype == tf.float32 and all(p.dtype == tf.float32 for p in parts.values())
    assert s_out["logits"].dtype == tf.float32 and t_out["features"].dtype == tf.float32
    scale = float(model.optimizer.dynamic_scale) if scaled_by_keras else 1.0
    assert float(scaled) == pytest.approx(float(loss) * scale, rel=1e-5)  # scale_loss inside the tape

    trainer = Supervised(teacher, input_key="hr")
    teacher.trainable = True
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    w0 = teacher.trainable_variables[0].numpy().copy()
    for _ in range(4):
        assert np.isfinite(trainer.train_on_batch(x, y, return_dict=True)["loss"])
    assert not np.array_equal(w0, teacher.trainable_variables[0].numpy())


def test_runtime_errors_name_the_setting(monkeypatch):
    with pytest.raises(ConfigError, match=r"run\.precision='float8'"):
        runtime.set_precision("float8")
    with pytest.raises(ConfigError, match=r"run\.strategy='tpu'"):
        runtime.make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
        runtime.make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        runtime.make_strategy("multiworker")
    bad_task = {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(bad_task))
    with pytest.raises(ConfigError, match="not a member of cluster"):
        runtime.make_strategy("multiworker")
    assert runtime.is_chief() is False and runtime.task_name() == "worker-3"
    assert runtime.worker_dir("runs/x") == Path("runs/x/workers/worker-3")
    monkeypatch.delenv("TF_CONFIG")
    assert runtime.worker_dir("runs/x") == Path("runs/x")
    assert runtime.is_chief() and runtime.make_strategy("default") is tf.distribute.get_strategy()
    tf.constant(0.0)  # TensorFlow is initialised by now
    with pytest.raises(RuntimeError, match="call it at the start of the program"):
        runtime.configure_cpu_devices(3)


MIRRORED_SCRIPT = """
import json, sys, tempfile
from ird_tf.training import runtime

runtime.configure_cpu_devices(2)  # before TensorFlow initialises its devices
strategy = runtime.make_strategy("mirrored")
import keras, numpy as np, tensorflow as tf
from ird_tf.config import LossConfig
from ird_tf.models import build_classifier
from ird_tf.training import Distiller, fit

S, B, C = 32, 8, 4
rng = np.random.default_rng(0)
hr = rng.random((16, S, S, 3), dtype=np.float32)
x, y = {"hr": hr, "lr": hr[:, ::2, ::2]}, rng.integers(0, C, 16).astype(np.int32)
train = tf.data.Dataset.from_tensor_slices((x, y)).batch(B).repeat()
val = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)

def build():
    keras.utils.set_random_seed(0)
    m = Distiller(build_classifier("vgg_tiny", C, (S, S, 3), name="t"),
                  build_classifier("vgg_tiny", C, (S // 2, S // 2, 3), name="s"),
                  LossConfig(ce=1, fm=0, at=10))
    m.compile(optimizer=keras.optimizers.SGD(0.1))
    return m

with strategy.scope():
    mirrored = build()
single = build()  # same initial weights, default strategy: the reference
losses = {}
for name, model in (("mirrored", mirrored), ("single", single)):
    history = fit(model, train, val, run_dir=tempfile.mkdtemp(), epochs=1, steps_per_epoch=2, num_classes=C,
                  attention_images=2, verbose=0, restore_best=False)
    losses[name] = history["loss"][0]
diff = max(float(np.abs(a.numpy() - b.numpy()).max())
           for a, b in zip(mirrored.student.weights, single.student.weights))
result = {"replicas": strategy.num_replicas_in_sync, "loss": losses, "max_weight_diff": diff}
print("RESULT", json.dumps(result))
"""


def run_script(tmp_path, name, text, timeout):
    script = tmp_path / name
    script.write_text(text)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=timeout, env=env)


def result_of(proc) -> dict:
    assert proc.returncode == 0 and "RESULT" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1].splitlines()[0])


@pytest.mark.large
@pytest.mark.timeout(150)
def test_mirrored_strategy_on_two_logical_cpus_matches_single_device_training(tmp_path):
    result = result_of(run_script(tmp_path, "mirrored.py", MIRRORED_SCRIPT, timeout=120))
    assert result["replicas"] == 2
    assert np.isfinite(result["loss"]["mirrored"])
    # per-replica losses are divided by the replica count before the optimizer sums the gradients:
    # two SGD steps on 2 x 4 images equal two steps on 8 images (a doubled gradient would differ by ~1)
    assert result["loss"]["mirrored"] == pytest.approx(result["loss"]["single"], rel=1e-4)
    assert result["max_weight_diff"] < 1e-5


WORKER_SCRIPT = """
import json, sys
from ird_tf.training import runtime

strategy = runtime.make_strategy("multiworker")  # first: it sets up the collective ops from TF_CONFIG
import keras, numpy as np, tensorflow as tf
from ird_tf.config import LossConfig
from ird_tf.models import build_classifier
from ird_tf.training import Distiller, fit

keras.utils.set_random_seed(0)
S, B, C = 32, 8, 4
rng = np.random.default_rng(0)
hr = rng.random((16, S, S, 3), dtype=np.float32)
x, y = {"hr": hr, "lr": hr}, rng.integers(0, C, 16).astype(np.int32)
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
train = tf.data.Dataset.from_tensor_slices((x, y)).batch(B).repeat().with_options(options)
val = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
with strategy.scope():
    model = Distiller(build_classifier("vgg_tiny", C, (S, S, 3), name="t"),
                      build_classifier("vgg_tiny", C, (S, S, 3), name="s"),
                      LossConfig(ce=1, fm=0.1, at=10))
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
history = fit(model, train, val, run_dir=sys.argv[1], epochs=1, steps_per_epoch=2, num_classes=C,
              attention_images=0, verbose=0)
checksum = float(sum(np.abs(v.numpy()).sum() for v in model.student.weights))
print("RESULT", json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": history["loss"][0],
                            "checksum": checksum}))
"""


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.large
@pytest.mark.timeout(180)
def test_multi_worker_strategy_with_two_local_workers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=150)  # a hung collective fails here instead of hanging CI
            outputs.append(result_of(subprocess.CompletedProcess(p.args, p.returncode, out, err)))
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert [o["replicas"] for o in outputs] == [2, 2]
    assert np.isfinite(outputs[0]["loss"]) and outputs[0]["loss"] == pytest.approx(outputs[1]["loss"])
    assert outputs[0]["checksum"] == pytest.approx(outputs[1]["checksum"], rel=1e-6)  # weights in sync
    assert (tmp_path / "run" / "done.json").is_file()  # worker 0 is the chief: it owns the run directory
    assert (tmp_path / "run" / "workers" / "worker-1" / "done.json").is_file()
