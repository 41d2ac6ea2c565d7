"""Command-line options become one validated config; bad options name the option."""

import pytest

from ird_tf.config import ExperimentConfig
from ird_tf.experiments.cli import parse


def test_defaults_are_the_cpu_preset():
    _, cfg = parse("t", ["--res", "2.5"])
    assert cfg.model.backbone == "vgg_tiny" and cfg.data.source == "synthetic"
    assert cfg.data.student_mag == 2.5 and cfg.data.factor == 4


def test_options_override_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    base = ExperimentConfig()
    base.loss.at = 3.0
    base.save(path)
    _, cfg = parse("t", ["--config", str(path), "--alpha-fm", "0.5", "--at-norm", "softmax", "--res", "1.25"])
    assert cfg.loss.at == 3.0 and cfg.loss.fm == 0.5 and cfg.loss.at_norm == "softmax"
    assert cfg.data.student_mag == 1.25


def test_data_sources(tmp_path):
    _, cfg = parse("t", ["--sicap", str(tmp_path), "--fold", "Val2"])
    assert cfg.data.source == "sicap" and cfg.data.root == str(tmp_path) and cfg.data.fold == "Val2"
    _, cfg = parse("t", ["--folders", str(tmp_path), "--at-first-order", "--jit"])
    assert cfg.data.source == "folders" and not cfg.loss.at_second_order and cfg.run.jit


def test_unlabeled_defaults_to_the_label_free_loss_and_refuses_cross_entropy(tmp_path, capsys):
    _, cfg = parse("t", ["--unlabeled", str(tmp_path), "--res", "1.25"])
    assert cfg.data.unlabeled == str(tmp_path)
    assert cfg.loss.weights() == {"kd": 1.0, "fmap": 1.0}
    # explicit weights are the user's: here KD + AT+ only
    argv = ["--unlabeled", str(tmp_path), "--alpha-ce", "0", "--alpha-fm", "0", "--alpha-kd", "2"]
    _, cfg = parse("t", argv)
    assert cfg.loss.weights() == {"at": 10.0, "kd": 2.0}
    with pytest.raises(SystemExit) as exc:
        parse("t", ["--unlabeled", str(tmp_path), "--alpha-kd", "1"])  # CE keeps the preset's 1
    assert exc.value.code == 2 and "--alpha-ce must be 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--res", "3"], "argument --res: data.student_mag=3.0"),
        (["--mode", "tiled"], "--mode"),
        (["--precision", "fp8"], "--precision"),
        (["--preset", "paper"], "--sicap"),
    ],
)
def test_bad_options_exit_with_a_message_naming_them(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        parse("t", argv)
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_print_config(capsys):
    with pytest.raises(SystemExit) as e:
        parse("t", ["--res", "1.25", "--print-config"])
    assert e.value.code == 0
    assert "student_mag: 1.25" in capsys.readouterr().out


def test_data_errors_and_divergence_end_the_command_with_a_message_not_a_traceback(tmp_path, capsys,
                                                                                   monkeypatch):
    from ird_tf import runs
    from ird_tf.errors import TrainingDiverged
    from ird_tf.experiments import distill, train_teacher

    # an empty SICAPv2 root: the reader's error names the expected folder
    assert train_teacher.main(["--sicap", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(tmp_path / "images") in err and "Traceback" not in err

    def diverges(*args, **kwargs):
        raise TrainingDiverged("training diverged at epoch 2, step 1: loss=nan. Stopped.")

    monkeypatch.setattr(runs, "load_splits", lambda cfg: type("S", (), {"train": [], "val": [], "test": [],
                                                                        "class_names": ("a", "b")})())
    monkeypatch.setattr(runs, "check_inputs", lambda *args, **kwargs: None)  # the fake splits list no files
    monkeypatch.setattr(runs, "run_student", diverges)
    assert distill.main(["--res", "2.5", "--no-export"]) == 1
    assert capsys.readouterr().err == "error: training diverged at epoch 2, step 1: loss=nan. Stopped.\n"


def test_class_order_of_class_folders(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from ird_tf.runs import load_splits

    for name in ("benign", "grade3", "grade4"):
        (tmp_path / name).mkdir()
        for i in range(7):
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / name / f"{name}_{i}.png")
    _, cfg = parse("t", ["--folders", str(tmp_path), "--classes", "grade4, benign,grade3"])
    assert cfg.data.class_names == ("grade4", "benign", "grade3")
    splits = load_splits(cfg)
    assert tuple(splits.class_names) == ("grade4", "benign", "grade3")
    train = splits.train
    assert set(train.loc[train["path"].str.contains("/grade4/"), "label"]) == {0}
    assert tuple(load_splits(parse("t", ["--folders", str(tmp_path)])[1]).class_names) == (
        "benign", "grade3", "grade4")  # sorted by default
    for argv in (["--folders", str(tmp_path), "--classes", "a,a"], ["--classes", "a,b"]):
        with pytest.raises(SystemExit) as e:
            parse("t", argv)
        assert e.value.code == 2 and "argument --classes" in capsys.readouterr().err
