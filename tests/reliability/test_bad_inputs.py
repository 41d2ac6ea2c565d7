"""Bad inputs as a new user gives them: each ends the command with a clear message naming the option,
file, row or class (exit 2 for a setting, 1 for data), never a traceback, and leaves no run directory
behind. The commands run in this process on a tiny synthetic dataset; nothing trains."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import tiny_experiment

pytestmark = pytest.mark.faults


def tiny_config(tmp_path: Path) -> Path:
    return tiny_experiment(tmp_path, board_images=4).save(tmp_path / "tiny.yaml")


def _png(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32, 3), value, np.uint8)).save(path)


def class_folders(tmp_path: Path, empty: str | None = None, corrupt: bool = False) -> Path:
    root = tmp_path / "folders"
    for split in ("train", "val", "test"):
        for k, name in enumerate(("benign", "grade3", "grade4")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            if split == "train" and name == empty:
                continue
            for i in range(2):
                _png(root / split / name / f"{name}_{i}.png", 40 * k + i)
    if corrupt:
        (root / "train" / "benign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def weights_of_other_classes(tmp_path: Path) -> Path:
    from ird_tf.models import build_classifier

    path = tmp_path / "three_classes.weights.h5"
    build_classifier("vgg_tiny", 3, (32, 32, 3), None).save_weights(str(path))
    return path


def bad_unlabeled(tmp_path: Path) -> Path:
    folder = tmp_path / "unlabeled"
    _png(folder / "a.png")
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    return folder


def nan_settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "nan.yaml"
    path.write_text("optim:\n  learning_rate: .nan\n")
    return path


LABEL_FREE = ["--alpha-ce", "0", "--alpha-fm", "0", "--alpha-at", "0", "--alpha-kd", "1", "--alpha-fmap", "1"]
#: (bad-input class, argv builder, exit status, words the message must contain)
BAD_INPUTS = [
    ("--lr nan", lambda t: ["--lr", "nan"], 2, ["--lr", "finite"]),
    ("--lr inf", lambda t: ["--lr", "inf"], 2, ["--lr", "finite"]),
    ("--res nan", lambda t: ["--res", "nan"], 2, ["--res"]),
    ("--teacher-mag nan", lambda t: ["--teacher-mag", "nan"], 2, ["--teacher-mag"]),
    ("--teacher-mag inf", lambda t: ["--teacher-mag", "inf"], 2, ["--teacher-mag"]),
    ("--alpha-at nan", lambda t: ["--alpha-at", "nan"], 2, ["--alpha-at"]),
    ("--epochs 0", lambda t: ["--epochs", "0"], 2, ["--epochs"]),
    ("--fold Val9 (synthetic)", lambda t: ["--fold", "Val9"], 2, ["--fold", "Val4"]),
    ("--fold Val9 --sicap", lambda t: ["--fold", "Val9", "--sicap", str(t)], 2, ["--fold", "Val4"]),
    ("--fold with --folders", lambda t: ["--fold", "Val2", "--folders", str(class_folders(t))], 2,
     ["--fold", "no folds"]),
    ("--weights missing file", lambda t: ["--weights", str(t / "none.weights.h5")], 2,
     ["--weights", "does not exist"]),
    ("--weights not HDF5", lambda t: ["--weights", str(_text(t / "notes.weights.h5"))], 2,
     ["--weights", "not an HDF5 file"]),
    ("--weights imagenet, no published weights", lambda t: ["--weights", "imagenet"], 2,
     ["--weights", "no published ImageNet weights"]),
    ("--weights of another model", lambda t: ["--weights", str(weights_of_other_classes(t))], 2,
     ["does not fit", "3"]),
    ("settings file with NaN", lambda t: ["--config", str(nan_settings_file(t))], 2,
     ["optim.learning_rate", "nan.yaml"]),
    ("--unlabeled with a bad image", lambda t: ["--unlabeled", str(bad_unlabeled(t)), *LABEL_FREE], 1,
     ["b.jpg", "unlabeled"]),
    ("class without training images", lambda t: ["--folders", str(class_folders(t, empty="grade4"))], 1,
     ["grade4", "--allow-empty-classes"]),
    ("corrupt training image", lambda t: ["--folders", str(class_folders(t, corrupt=True))], 1,
     ["broken.png", "--skip-corrupt"]),
]


def _text(path: Path) -> Path:
    path.write_text("these are not weights\n")
    return path


@pytest.mark.parametrize(("argv", "status", "words"), [b[1:] for b in BAD_INPUTS],
                         ids=[b[0] for b in BAD_INPUTS])
def test_a_bad_input_ends_with_a_clear_message_and_no_run_directory(tmp_path, monkeypatch, capsys, argv,
                                                                    status, words):
    from ird_tf.experiments import distill

    monkeypatch.chdir(tmp_path)
    args = argv(tmp_path)
    if "--config" not in args:
        args = ["--config", str(tiny_config(tmp_path)), *args]
    if "--res" not in args:
        args += ["--res", "2.5"]
    try:
        code = distill.main([*args, "--no-export"])
    except SystemExit as e:  # argument errors: argparse's usage line and one error line
        code = e.code
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith(("error: ", "t: error", "distill")) or "error:" in message, err
    for word in words:
        assert word in message, (word, message)
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.rglob("*") if p.is_file()], sorted(runs.rglob("*"))
