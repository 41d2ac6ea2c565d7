"""The machinery shared by the sweep and the label-free study: value checks, seeds, commit, one run."""

from __future__ import annotations

import importlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ird_tf import runs
from ird_tf.config import ConfigError, ExperimentConfig
from ird_tf.errors import TrainingDiverged
from ird_tf.experiments import study
from ird_tf.runs import RunResult, write_result

# the module, not the package's function of the same name
execute_module = importlib.import_module("ird_tf.experiments.study.execute")


def test_value_checks_name_the_setting_and_reject_booleans():
    assert study.as_list("s.x", (1, 2)) == [1, 2]
    assert study.as_number("s.y", 3) == 3.0
    assert study.as_integer("s.z", 7) == 7
    with pytest.raises(ConfigError, match=r"s\.x='a': expected a list"):
        study.as_list("s.x", "a")
    with pytest.raises(ConfigError, match=r"s\.y=True: expected a number"):
        study.as_number("s.y", True)
    with pytest.raises(ConfigError, match=r"s\.z=2\.5: expected an integer"):
        study.as_integer("s.z", 2.5)
    assert study.as_numbers("s.m", [5, 2.5]) == (5.0, 2.5)
    assert study.as_integers("s.seeds", [22, 32]) == (22, 32)
    with pytest.raises(ConfigError, match=r"s\.seeds\[1\]='x': expected an integer"):
        study.as_integers("s.seeds", [22, "x"])
    with pytest.raises(ConfigError, match=r"s\.m=3: expected a list"):
        study.as_numbers("s.m", 3)


def test_select_seeds():
    seeds = (22, 32, 43)
    assert study.select_seeds(seeds, None, False, "sweep.seeds") == seeds
    assert study.select_seeds(seeds, None, True, "sweep.seeds") == (22,)
    assert study.select_seeds(seeds, 2, True, "sweep.seeds") == (22, 32)
    with pytest.raises(ConfigError, match=r"--seeds 4: expected 1\.\.3 \(sweep\.seeds = \[22, 32, 43\]\)"):
        study.select_seeds(seeds, 4, False, "sweep.seeds")


def test_fmt_time_and_nan():
    assert study.fmt_time(3725.4) == "1:02:05"
    assert study.nan_if_none(None) != study.nan_if_none(None)  # NaN
    assert study.nan_if_none(0.25) == 0.25


def test_git_commit_in_and_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study.git_commit() == "unknown"
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q"], check=True, env=env)
    (tmp_path / "f").write_text("x")
    subprocess.run(["git", "add", "f"], check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "m"], check=True, env=env)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert study.git_commit() == head
    results = tmp_path / "experiments" / "results"
    results.mkdir(parents=True)
    (results / "t.md").write_text("a")
    subprocess.run(["git", "add", "."], check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "r"], check=True, env=env)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (results / "t.md").write_text("b")  # a study rewriting its own tables: still that commit
    (tmp_path / "untracked.txt").write_text("x")
    assert study.git_commit() == head
    (tmp_path / "f").write_text("changed code")
    assert study.git_commit() == head + "+dirty"


@dataclass
class _Planned:
    kind: str
    cfg: ExperimentConfig
    run_dir: Path

    def label(self) -> str:
        return f"2.5x {self.kind} seed 22"


def test_execute_reuses_a_finished_run_and_reports_a_diverged_one(tmp_path, monkeypatch):
    cfg = ExperimentConfig()
    done = tmp_path / "done"
    done.mkdir()
    write_result(RunResult(done, {"test": {"balanced_accuracy": 0.5, "kappa": 0.4}}, 1.0))
    calls, lines = [], []

    def fake_student(cfg, splits, strategy, *, kind):
        calls.append(kind)
        if kind == "diverges":
            raise TrainingDiverged("loss is nan at epoch 2")
        return runs.read_result(done), None

    monkeypatch.setattr(runs, "run_student", fake_student)
    prepared = []
    monkeypatch.setattr(execute_module, "prepare_run", prepared.append)
    result, reused, failure = study.execute(_Planned("distill", cfg, done), None, None, tag="1/2",
                                            start=0.0, say=lines.append)
    assert reused and failure is None and result.metrics["test"]["kappa"] == 0.4
    assert "reused" in lines[0] and not any("done in" in line for line in lines)
    assert prepared == []  # a finished run is only read: nothing to seed

    lines.clear()
    result, reused, failure = study.execute(_Planned("diverges", cfg, tmp_path / "new"), None, None,
                                            tag="2/2", start=0.0, say=lines.append)
    assert result is None and not reused
    assert failure == "2.5x diverges seed 22: loss is nan at epoch 2"
    assert "training" in lines[0] and "DIVERGED" in lines[-1]
    assert calls == ["distill", "diverges"]
    assert prepared == [cfg]
