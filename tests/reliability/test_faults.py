"""Fault injection: ``distill`` killed with SIGKILL at named points (``ird_tf.faults``), run again, killed
again at the next point, and so on, until a last uninterrupted call; the result must equal that of an
uninterrupted run of the same command: the same history (every epoch trained once, on the same batches,
to the same numbers), the same best epoch and test scores, one export, no stray temporary file. On the
way, damaged checkpoints are left on disk (detected: the run starts again) and a full disk is simulated
(one line, exit 1, the previous checkpoint kept). The slide command is killed in the middle of a slide.
Real processes on a tiny synthetic dataset (32 patches of 32 px, two epochs per model).

Each chain is one test: a step's process counts the points from its own start, so ``epoch@1`` in a
process that resumes the teacher is the teacher's second epoch. Every step asserts that its fault fired
(SIGKILL, or exit 1 for the full disk), so a point that a change moves or removes fails the test."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny import tiny_experiment

from ird_tf.files import stray_temporaries

pytestmark = pytest.mark.faults

EPOCHS = 2  # teacher and student each


@dataclass(frozen=True)
class Step:
    what: str          # what is interrupted (the fault matrix prints it)
    fault: str         # IRD_TF_FAULT
    error: str = ""    # IRD_TF_FAULT_ERROR (ENOSPC: a full disk instead of a kill)
    damage: str = ""   # done to the files after the step: see ``damage``
    expect: str = ""   # words the next step's output must contain


#: teacher side; the last call trains the student and exports without a fault
TEACHER_CHAIN = [
    Step("dataset generation", "dataset"),
    Step("teacher training, in epoch 1", "batch@2"),
    Step("writing the teacher's best.weights.h5", "write:best.weights.h5@1"),
    Step("writing history.csv", "write:history.csv@1"),
    Step("between epochs: after the teacher's epoch-1 backup", "epoch@1", damage="truncated backup",
         expect="starting this run again from epoch 1"),
    Step("after a truncated backup was found", "epoch@1", damage="garbled latest.json",
         expect="starting this run again from epoch 1"),
    Step("after a garbled latest.json was found", "epoch@1"),
    Step("full disk while writing the epoch-2 backup's latest.json", "write:latest.json@1", error="ENOSPC",
         expect="previous attempt failed"),
    Step("writing a backup's latest.json", "write:latest.json@1"),
]
#: student side: the teacher finishes in the first step
STUDENT_CHAIN = [
    Step("teacher trained, writing its result.json", "write:result.json@1"),
    Step("writing the student's best.weights.h5", "write:best.weights.h5@1"),
    Step("between the student's epochs", "epoch@1", damage="corrupted best checkpoint",
         expect="starting this run again from epoch 1"),
    Step("student training, in epoch 2", "batch@3"),
    Step("writing the student's last.weights.h5", "write:last.weights.h5@1"),
    Step("during the student's export", "export"),
]
SLIDE_STEP = Step("in the middle of the second slide", "slide-batch:s1@3")


def tiny_config(tmp_path: Path) -> Path:
    return tiny_experiment(tmp_path, epochs=EPOCHS).save(tmp_path / "tiny.yaml")


def run(cwd: Path, argv: list[str], step: Step | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRD_TF_FAULT")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if step:
        env["IRD_TF_FAULT"] = step.fault
        if step.error:
            env["IRD_TF_FAULT_ERROR"] = step.error
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def distill(tmp_path: Path, step: Step | None = None) -> subprocess.CompletedProcess:
    argv = ["ird_tf.experiments.distill", "--config", str(tiny_config(tmp_path)), "--res", "2.5"]
    return run(tmp_path, argv, step)


def only(pattern: str, root: Path) -> Path:
    found = sorted(root.glob(pattern))
    assert len(found) == 1, (pattern, found)
    return found[0]


def damage(tmp_path: Path, what: str) -> None:
    runs = tmp_path / "runs"
    if what == "truncated backup":
        backup = only("teachers/*", runs) / "backup"
        state = backup / json.loads((backup / "latest.json").read_text())["weights"]
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif what == "garbled latest.json":
        (only("teachers/*", runs) / "backup" / "latest.json").write_text('{"epoch": 1, "weights": ')
    elif what == "corrupted best checkpoint":
        best = only("students/*", runs) / "best.weights.h5"
        data = bytearray(best.read_bytes())
        data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # same size, some bytes zeroed
        best.write_bytes(bytes(data))
    else:
        raise ValueError(what)


def outcome(tmp_path: Path) -> dict:
    """What a finished ``distill`` left, in a form two runs can be compared by."""
    runs = tmp_path / "runs"
    result = {}
    for role in ("teachers", "students"):
        run_dir = only(f"{role}/*", runs)
        for name in ("result.json", "done.json", "best.weights.h5", "last.weights.h5"):
            assert (run_dir / name).is_file(), (run_dir, name)
        assert not (run_dir / "failed.json").exists() and not (run_dir / "lock.pid").exists()
        with (run_dir / "history.csv").open(newline="") as f:
            history = list(csv.DictReader(f))
        assert [int(float(r["epoch"])) for r in history] == list(range(1, EPOCHS + 1)), run_dir
        result[role] = {"name": run_dir.name, "history": history,
                        "best_epoch": json.loads((run_dir / "best.json").read_text())["epoch"],
                        "test": json.loads((run_dir / "metrics_test.json").read_text())}
    exports = tmp_path / "saved_models" / result["students"]["name"]
    assert sorted(p.name for p in exports.iterdir()) == ["1"], list(exports.iterdir())
    assert stray_temporaries(tmp_path) == []
    assert not list(tmp_path.rglob(".tmp-*")) and not list((tmp_path / "cache").glob("*.tmp*"))
    return result


def run_chain(tmp_path: Path, chain: list[Step]) -> subprocess.CompletedProcess:
    expect = ""
    for step in chain:
        got = distill(tmp_path, step)
        out = got.stdout + got.stderr
        if step.error:  # one line naming the disk, the run kept for the next call
            assert got.returncode == 1, (step, out[-3000:])
            lines = [ln for ln in got.stderr.splitlines() if ln.startswith("error: ") or "Traceback" in ln]
            assert len(lines) == 1 and "No space left on device" in lines[0], (step, got.stderr[-3000:])
            assert "Traceback" not in got.stderr
            assert stray_temporaries(tmp_path) == []  # the unwritten file's temporary removed
        else:
            assert got.returncode == -signal.SIGKILL, (step, out[-3000:])
        assert expect in got.stdout, (step, expect, got.stdout[-3000:])
        if step.damage:
            damage(tmp_path, step.damage)
        expect = step.expect
    last = distill(tmp_path)
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    assert expect in last.stdout, (expect, last.stdout[-3000:])
    return last


@pytest.mark.parametrize("chain", ["teacher", "student"])
def test_killed_at_each_point_then_rerun_equals_an_uninterrupted_run(tmp_path, chain):
    reference = tmp_path / "uninterrupted"
    reference.mkdir()
    plain = distill(reference)
    assert plain.returncode == 0, plain.stderr[-3000:]
    expected = outcome(reference)

    faulted = tmp_path / "faulted"
    faulted.mkdir()
    run_chain(faulted, TEACHER_CHAIN if chain == "teacher" else STUDENT_CHAIN)
    got = outcome(faulted)
    assert got == expected  # same run names, histories to the last digit, best epochs, test scores

    if chain == "student":  # the slide command, killed in the middle of the second of two slides
        from ird_tf.data.synthetic.slide import SlideSpec, write_slide

        slides = tmp_path / "slides"
        slides.mkdir()
        for i in range(2):
            write_slide(slides / f"s{i}.tiff", SlideSpec(width=1024, height=768, seed=i, variants=1))
        student = only("runs/students/*", faulted)
        argv = ["ird_tf.experiments.slide", "--model", str(student), str(slides), "--batch-size", "16"]
        whole = run(tmp_path, [*argv, "--out", str(tmp_path / "whole")])
        assert whole.returncode == 0, whole.stderr[-3000:]
        killed = run(tmp_path, [*argv, "--out", str(tmp_path / "resumed")], SLIDE_STEP)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        assert (tmp_path / "resumed" / "s0" / "done.json").is_file()
        assert not (tmp_path / "resumed" / "s1" / "done.json").exists()
        again = run(tmp_path, [*argv, "--out", str(tmp_path / "resumed")])
        assert again.returncode == 0, again.stderr[-3000:]
        assert "s0.tiff: done before with the same settings, skipped" in again.stdout + again.stderr
        for name in ("tiles.csv", "tiles.geojson", "heatmap.png", "tissue.png"):
            assert (tmp_path / "resumed" / "s1" / name).read_bytes() == \
                (tmp_path / "whole" / "s1" / name).read_bytes(), name
        assert stray_temporaries(tmp_path / "resumed") == []
