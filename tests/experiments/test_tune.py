"""Loss weights chosen on validation: the tune command on a tiny synthetic benchmark (in this process),
the rule of choice, the record and distill's --weights-from."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from tiny import tiny_experiment

from ird_tf.config import ExperimentConfig
from ird_tf.errors import ConfigError
from ird_tf.experiments import distill, tune
from ird_tf.runs.tuning import (
    DEFAULT_GRID,
    GRID_TERMS,
    apply_record,
    check_grid,
    choose,
    grid_points,
    read_record,
    write_record,
)


def tiny_config(tmp_path: Path) -> Path:
    return tiny_experiment(tmp_path, verbose=0).validate().save(tmp_path / "tiny.yaml")


def candidate(weights: dict, kappa, bal) -> dict:
    return {"label": "x", "weights": {**dict.fromkeys(GRID_TERMS, 0.0), **weights}, "run_dir": "r",
            "val": {"kappa": kappa, "balanced_accuracy": bal}}


def test_the_default_grid_holds_the_student_without_distillation():
    points = grid_points(check_grid(DEFAULT_GRID))
    assert len(points) == len(DEFAULT_GRID["fm"]) * len(DEFAULT_GRID["at"])
    assert all(v == 0 for v in points[0].values())  # CE only: no distillation, first
    fm, at = DEFAULT_GRID["fm"], DEFAULT_GRID["at"]
    assert {(p["fm"], p["at"]) for p in points} == {(f, a) for f in fm for a in at}


@pytest.mark.parametrize("grid, named", [({"fm": (0.1, 1.0)}, "--grid-fm"),
                                         ({"at": (0.0, -1.0)}, "--grid-at"),
                                         ({"ce": (0.0, 1.0)}, "--grid-ce")])
def test_a_bad_grid_names_its_option(grid, named):
    with pytest.raises(ConfigError, match=named):
        check_grid(grid)


def test_choice_kappa_then_balanced_accuracy_then_the_simpler_candidate():
    index, reason = choose([candidate({}, 0.5, 0.4), candidate({"fm": 0.1}, 0.6, 0.1)])
    assert index == 1 and "highest validation kappa" in reason
    index, reason = choose([candidate({}, 0.5, 0.4), candidate({"fm": 0.1}, 0.5, 0.45)])
    assert index == 1 and "balanced accuracy" in reason
    index, reason = choose([candidate({"fm": 0.1, "at": 1.0}, 0.5, 0.4), candidate({"at": 10.0}, 0.5, 0.4),
                            candidate({"at": 1.0}, 0.5, 0.4)])
    assert index == 2 and "simpler" in reason
    # an undefined kappa never wins over a number
    index, _ = choose([candidate({}, math.nan, 0.9), candidate({"fm": 0.1}, -0.2, 0.1)])
    assert index == 1
    index, reason = choose([candidate({"at": 1.0}, None, 0.5), candidate({}, math.nan, 0.5)])
    assert index == 1 and "kappa (undefined)" in reason and "simpler" in reason


def test_choice_reads_only_validation_scores():
    """Scores of any other split are not looked at: a dictionary that fails on any other key."""

    class OnlyVal(dict):
        def __getitem__(self, key):
            assert key in ("val", "weights"), f"selection read {key!r}"
            return super().__getitem__(key)

        def get(self, key, default=None):
            assert key in ("val", "weights"), f"selection read {key!r}"
            return super().get(key, default)

    c = [OnlyVal(candidate({}, 0.1, 0.2), test={"kappa": 1.0}), OnlyVal(candidate({"at": 1.0}, 0.3, 0.2),
                                                                         test={"kappa": 0.0})]
    assert choose(c)[0] == 1


def fake_record(tmp_path: Path, config: Path) -> Path:
    cfg = ExperimentConfig.load(config)
    cfg.data.student_mag = 2.5
    folder = tmp_path / "runs" / "tuning" / "fake"
    write_record(folder, cfg, {"fm": (0.0, 0.1)}, [candidate({}, 0.5, 0.5), candidate({"fm": 0.1}, 0.7, 0.5)])
    return folder


def test_weights_from_sets_the_chosen_weights_and_checks_what_they_were_tuned_for(tmp_path, capsys):
    config = tiny_config(tmp_path)
    folder = fake_record(tmp_path, config)
    record = read_record(folder)
    assert record["choice"]["weights"]["fm"] == 0.1 and "tuning.md" in {p.name for p in folder.iterdir()}
    cfg = ExperimentConfig.load(config)
    cfg.data.student_mag = 2.5
    tuned = apply_record(cfg, record, str(folder))
    assert (tuned.loss.fm, tuned.loss.at, tuned.loss.ce) == (0.1, 0.0, cfg.loss.ce)

    assert tune_config_exit(["--config", str(config), "--res", "2.5", "--weights-from", str(folder),
                             "--print-config"]) == 0
    assert "fm: 0.1" in capsys.readouterr().out
    for argv, named in (
            (["--res", "1.25"], "was tuned for student_mag 2.5"),
            (["--res", "2.5", "--mode", "native"], "was tuned for mode 'upsampled'"),
            (["--res", "2.5", "--fold", "Val2"], "was tuned for data"),
            (["--res", "2.5", "--alpha-at", "1"], "leave out --alpha-at")):
        assert tune_config_exit(["--config", str(config), "--weights-from", str(folder), *argv,
                                 "--print-config"]) == 2
        err = capsys.readouterr().err
        assert "error: argument --weights-from: " in err and named in err, err
    (folder / "tuning.json").write_text("{}")
    assert tune_config_exit(["--config", str(config), "--res", "2.5", "--weights-from", str(folder)]) == 2
    assert "not a valid tuning record" in capsys.readouterr().err
    shutil.rmtree(folder)
    assert tune_config_exit(["--config", str(config), "--res", "2.5", "--weights-from", str(folder)]) == 2
    assert "does not exist; make it with python -m ird_tf.experiments.tune" in capsys.readouterr().err


def tune_config_exit(argv: list[str]) -> int:
    """distill's exit status on ``argv`` (a parse error exits)."""
    try:
        return distill.main(argv)
    except SystemExit as e:
        return e.code


def test_tune_help_names_the_default_grid(capsys):
    with pytest.raises(SystemExit):
        tune.main(["-h"])
    out = capsys.readouterr().out
    assert "--grid-fm" in out and "(default 0,0.1)" in out and "(default 0,1,10)" in out
    assert "validation" in out and "--weights-from" in out


def test_tune_refuses_alpha_of_a_gridded_term(tmp_path, capsys):
    config = tiny_config(tmp_path)
    assert tune.main(["--config", str(config), "--res", "2.5", "--alpha-fm", "1"]) == 2
    err = capsys.readouterr().err
    assert "argument --alpha-fm: the grid sets the distillation weights; use --grid-fm" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.large
def test_tune_never_reads_the_test_split_and_distill_takes_its_choice(tmp_path, capsys):
    """Every test image is overwritten with bytes no decoder reads before tuning: any check, dataset or
    score of the test split would fail. Tuning succeeds and records its choice; distill, which scores
    the test split, fails on those files (so the damage is visible), and with the images back takes
    the chosen weights, finds the chosen candidate's run and scores it on the test split."""
    from ird_tf.runs import load_splits

    config = tiny_config(tmp_path)
    splits = load_splits(ExperimentConfig.load(config))
    test_images = [Path(p) for p in splits.test["path"]]
    assert test_images and not set(test_images) & {Path(p) for p in splits.val["path"]}
    saved = {p: p.read_bytes() for p in test_images}
    for p in test_images:
        p.write_bytes(b"not an image")

    argv = ["--config", str(config), "--res", "2.5", "--grid-fm", "0", "--grid-at", "0,1", "--name", "t"]
    assert tune.main(argv) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    folder = tmp_path / "runs" / "tuning" / "t"
    record = json.loads((folder / "tuning.json").read_text())
    assert record["grid"] == {"fm": [0.0], "at": [0.0, 1.0]}
    assert [c["weights"]["at"] for c in record["candidates"]] == [0.0, 1.0]
    assert record["for"]["student_mag"] == 2.5 and record["choice"]["reason"]
    for c in record["candidates"]:
        run_dir = Path(c["run_dir"])
        assert set(json.loads((run_dir / "result.json").read_text())["metrics"]) == {"val"}
        assert not list(run_dir.glob("metrics_test*")) and (run_dir / "metrics_val.json").is_file()
    teacher = next((tmp_path / "runs" / "teachers").iterdir())
    assert set(json.loads((teacher / "result.json").read_text())["metrics"]) == {"val"}
    assert "| candidate | val kappa |" in (folder / "tuning.md").read_text() and "--weights-from" in out

    # distill reads the test split: the damaged files stop it (what tuning never ran into)
    assert distill.main(["--config", str(config), "--res", "2.5", "--weights-from", str(folder),
                         "--no-export"]) == 1
    assert "the test split" in capsys.readouterr().err

    for p, data in saved.items():
        p.write_bytes(data)
    shutil.rmtree(Path(ExperimentConfig.load(config).data.cache_dir) / "checks", ignore_errors=True)
    assert distill.main(["--config", str(config), "--res", "2.5", "--weights-from", str(folder),
                         "--no-export"]) == 0
    out = capsys.readouterr().out
    chosen = Path(record["choice"]["run_dir"])
    assert f"student found: {chosen}" in out and "scoring it on the test split" in out
    assert set(json.loads((chosen / "result.json").read_text())["metrics"]) == {"val", "test"}
    assert (chosen / "metrics_test.json").is_file()
    # the choice's validation scores are the run's own, unchanged by scoring the test split
    assert json.loads((chosen / "result.json").read_text())["metrics"]["val"]["kappa"] == \
        record["candidates"][record["choice"]["index"]]["val"]["kappa"]

    # the same tune again reuses every candidate and makes the same choice
    assert tune.main(argv) == 0
    again = capsys.readouterr().out
    assert again.count("student found") == 2 and "distilling" not in again
    assert json.loads((folder / "tuning.json").read_text())["choice"] == record["choice"]
