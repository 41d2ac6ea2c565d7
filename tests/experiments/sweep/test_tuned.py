"""The sweep's ``tuned`` method: the weights chosen on the validation split per seed and magnification,
reported next to the fixed-weight methods."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from tiny import tiny_experiment

from ird_tf.config import ExperimentConfig
from ird_tf.experiments.sweep import (
    Method,
    SweepConfig,
    default_methods,
    describe,
    load_sweep,
    plan,
    save_sweep,
)
from ird_tf.experiments.sweep.cli import main
from ird_tf.runs import read_result


def tiny_base(tmp_path: Path) -> ExperimentConfig:
    return tiny_experiment(tmp_path, verbose=0)


def tiny_sweep() -> SweepConfig:
    tuned = Method("tuned", grid={"fm": (0.0,), "at": (0.0, 1.0)})
    return SweepConfig(name="tiny", magnifications=(2.5,), methods={"alone": default_methods()["alone"],
                                                                    "tuned": tuned},
                       seeds=(22,), localisation=())


def test_tuned_method_round_trip_and_description(tmp_path):
    base = tiny_base(tmp_path)
    path = save_sweep(tmp_path / "s.yaml", base, tiny_sweep())
    _, back = load_sweep(path)
    assert back.methods == tiny_sweep().methods
    assert back.validate(base).methods["tuned"].tuning_grid == {"fm": (0.0,), "at": (0.0, 1.0)}
    text = describe(back.methods["tuned"], base.loss)
    assert "chosen on the validation split" in text and "AT+ {0, 1}" in text
    # a tuned run trains no distillation term of its own: each candidate adds its weights
    assert back.methods["tuned"].loss_config(base.loss).weights() == {"ce": 1.0}
    # by name in a list: tune's default grid
    d = {**base.to_dict(), "sweep": {**tiny_sweep().to_dict(), "methods": ["alone", "tuned"]}}
    (tmp_path / "l.yaml").write_text(yaml.safe_dump(d))
    _, listed = load_sweep(tmp_path / "l.yaml")
    assert listed.validate(base).methods["tuned"].tuning_grid == {"fm": (0.0, 0.1), "at": (0.0, 1.0, 10.0)}
    # not tuned yet: pending, in the tuning folder
    p = next(p for p in plan(base, back) if p.method == "tuned")
    assert p.kind == "tuned" and p.run_dir.parent.name == "tuning" and read_result(p.run_dir) is None


@pytest.mark.parametrize("spec, named", [
    ({"kind": "tuned", "grid": {"at": [1, 10]}}, "sweep.methods.t.grid.at: [1.0, 10.0]: the grid must "
                                                 "hold 0"),
    ({"kind": "tuned", "grid": {"ce": [0, 1]}}, "sweep.methods.t.grid: ['ce'] are not distillation terms"),
    ({"kind": "tuned", "grid": {"fm": "0,1"}}, "sweep.methods.t.grid.fm"),
    ({"kind": "tuned", "loss": {"at": 10}}, "sweep.methods.t.loss: kind 'tuned' takes the distillation"),
    ({"kind": "distill", "loss": {"fm": 1}, "grid": {"fm": [0, 1]}}, "only kind 'tuned' has a grid"),
])
def test_a_bad_tuned_method_names_the_key(tmp_path, capsys, spec, named):
    base = tiny_base(tmp_path)
    d = {**base.to_dict(), "sweep": {**tiny_sweep().to_dict(), "methods": {"t": spec}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(SystemExit) as e:
        main(["--config", str(tmp_path / "bad.yaml"), "--dry-run"])
    assert e.value.code == 2
    assert named in capsys.readouterr().err


@pytest.mark.large
def test_tiny_sweep_tunes_then_reports_the_choice_next_to_the_fixed_methods(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = tiny_base(tmp_path)
    config = save_sweep(tmp_path / "tiny.yaml", base, tiny_sweep())
    assert main(["--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "0 failed" in out and "candidate 2/2" in out

    tuned = next(p for p in plan(base, tiny_sweep()) if p.method == "tuned")
    record_path = next((tmp_path / "runs" / "tuning").iterdir()) / "tuning.json"
    record = json.loads(record_path.read_text())
    chosen = Path(record["choice"]["run_dir"])
    assert tuned.run_dir == chosen  # the plan now names the chosen candidate's run
    assert tuned.cfg.loss.at == record["choice"]["weights"]["at"]
    # the choice is scored on the test split after it was made; the other candidate never is
    assert set(read_result(chosen).metrics) == {"val", "test"}
    others = [Path(c["run_dir"]) for c in record["candidates"] if Path(c["run_dir"]) != chosen]
    assert len(others) == 1 and set(read_result(others[0]).metrics) == {"val"}
    assert not list(others[0].glob("metrics_test*"))

    md = (tmp_path / "experiments/results/sweep_tiny.md").read_text()
    assert "| 2.5x | alone | 1/1 |" in md and "| 2.5x | tuned | 1/1 |" in md
    assert f"2.5x tuned seed 22: {record['choice']['label']}" in md
    assert "`tuned` = CE + weights chosen on the validation split" in md
    test_kappa = read_result(chosen).metrics["test"]["kappa"]
    row = next(line for line in md.splitlines() if line.startswith("| 2.5x | tuned |"))
    assert f"{test_kappa:.3f}" in row
    # the header's compute counts every run trained: the teacher, alone and both candidates
    assert "the train and eval steps of the 4 runs it trained" in md

    # the same sweep again: every run (and every candidate) reused
    assert main(["--config", str(config)]) == 0
    again = capsys.readouterr().out
    assert "0 trained, 3 reused" in again and "distilling" not in again and "training alone" not in again
    assert json.loads(record_path.read_text())["choice"] == record["choice"]
    assert main(["--config", str(config), "--dry-run"]) == 0
    assert "3/3 runs finished" in capsys.readouterr().out


def test_sweep_without_tuned_plans_as_before(tmp_path):
    base = tiny_base(tmp_path)
    s = replace(tiny_sweep(), methods={"alone": default_methods()["alone"]})
    assert [p.kind for p in plan(base, s)] == ["teacher", "alone"]
