"""The main job as a user runs it: real processes, real files, a real SIGKILL in the middle."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hp_metadata
from tiny import tiny_experiment

from ird_tf.config import ExperimentConfig

pytestmark = pytest.mark.large


def tiny_config(tmp_path: Path, epochs: int = 2) -> Path:
    """48 patches of 64 px and vgg_tiny: seconds per epoch."""
    return tiny_experiment(tmp_path, size=64, per_slide=6, epochs=epochs, teacher_epochs=2,
                           board_images=2).save(tmp_path / "tiny.yaml")


def command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ird_tf.experiments.distill", "--config", str(config), "--res", "2.5",
            *extra]


def run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def only(pattern: str, root: Path) -> Path:
    found = sorted(root.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_distill_end_to_end_then_reuse(tmp_path):
    config = tiny_config(tmp_path)
    first = run(command(config), tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "training it first" in first.stdout
    assert "| teacher | 10x |" in first.stdout and "| student | 2.5x |" in first.stdout

    runs = tmp_path / "runs"
    teacher = only("teachers/*", runs)
    student = only("students/*", runs)
    for name in ("config.yaml", "best.weights.h5", "last.weights.h5", "history.csv", "metrics_test.json",
                 "metrics_val.csv", "result.json", "done.json"):
        assert (student / name).is_file(), name
        assert (teacher / name).is_file(), name
    metrics = json.loads((student / "metrics_test.json").read_text())
    assert 0.0 <= metrics["balanced_accuracy"] <= 1.0
    assert len(metrics["confusion_matrix"]) == 4
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]
    with open(student / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert {"ce", "fm", "at", "loss", "val_kappa", "learning_rate"} <= set(rows[0])
    assert list((student / "tb").rglob("events.out.tfevents*"))
    # one definition of the scores: best.json (training's validation) = metrics_val.json (evaluation)
    for run_dir in (teacher, student):
        best = json.loads((run_dir / "best.json").read_text())
        val = json.loads((run_dir / "metrics_val.json").read_text())
        for key in ("kappa", "balanced_accuracy", "macro_f1"):
            assert best["logs"][f"val_{key}"] == pytest.approx(val[key], abs=1e-9), (run_dir.name, key)
    # TensorBoard: one run per model with its hyperparameters and final scores
    for run_dir, role, mag in ((teacher, "teacher", 10.0), (student, "student", 2.5)):
        acc = event_accumulator.EventAccumulator(str(run_dir / "tb" / "hparams"),
                                                 size_guidance={"tensors": 0}).Reload()
        start = hp_metadata.parse_session_start_info_plugin_data(
            acc.PluginTagToContent("hparams")[hp_metadata.SESSION_START_INFO_TAG])
        hparams = start.hparams
        assert (hparams["role"].string_value, hparams["magnification"].number_value) == (role, mag)
        (final,) = acc.Tensors("final/test_balanced_accuracy")
        test = json.loads((run_dir / "metrics_test.json").read_text())
        assert float(tf.make_ndarray(final.tensor_proto)) == pytest.approx(test["balanced_accuracy"])
        curves = event_accumulator.EventAccumulator(str(run_dir / "tb"), {"tensors": 0}).Reload()
        assert "val/kappa" in curves.Tags()["tensors"]
    assert "attention/validation_patches" in curves.Tags()["tensors"]  # the student's
    assert ExperimentConfig.load(student / "config.yaml").data.student_mag == 2.5
    export = only(f"saved_models/{student.name}/1/saved_model.pb", tmp_path)
    assert export.is_file()

    again = run(command(config, "--no-export"), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "teacher found" in again.stdout and "student found" in again.stdout
    assert again.stdout.count("| student | 2.5x |") == 1

    # killed after the export but before the run was marked finished: the resumed run scores the
    # student again but does not export the same weights a second time
    (student / "result.json").unlink()
    resumed = run(command(config), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already finished" in resumed.stdout and "student already exported" in resumed.stdout
    assert sorted(p.name for p in (tmp_path / "saved_models" / student.name).iterdir()) == ["1"]
    assert (student / "result.json").is_file()


def test_killed_run_resumes_with_the_same_command(tmp_path):
    config = tiny_config(tmp_path, epochs=4)
    cmd = command(config, "--no-export")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    students = tmp_path / "runs" / "students"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if list(students.glob("*/backup/latest.json")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed:\n" + proc.stdout.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    student = only("*", students)
    assert not (student / "done.json").exists()
    epochs_done = json.loads((student / "backup" / "latest.json").read_text())["epoch"]
    assert 1 <= epochs_done < 4

    resumed = run(cmd, tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "teacher found" in resumed.stdout
    assert f"resuming after epoch {epochs_done}" in resumed.stdout
    with open(student / "history.csv") as f:
        epochs = [int(r["epoch"]) for r in csv.DictReader(f)]
    assert epochs == [1, 2, 3, 4]
    assert json.loads((student / "done.json").read_text())["epochs"] == 4


def test_bad_option_names_the_option(tmp_path):
    result = run([sys.executable, "-m", "ird_tf.experiments.distill", "--res", "3"], tmp_path, timeout=120)
    assert result.returncode == 2
    assert "argument --res: data.student_mag" in result.stderr and "whole number" in result.stderr
