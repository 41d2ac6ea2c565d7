"""``python -m ird_tf.experiments.slide``: every option documented, bad options answered in one line
naming the option (exit 2), a bad slide among good ones named while the others finish (exit 1), the
µm/px override refused when far from the metadata unless forced."""

import csv
import json
import subprocess
import sys

import keras
import pytest

from ird_tf.data.synthetic.slide import SlideSpec, write_slide
from ird_tf.experiments.slide import main
from ird_tf.export.serving import export_for_serving
from ird_tf.models import build_classifier

OPTIONS = ("--model", "--out", "--teacher", "--backend", "--mpp", "--force-mpp", "--tissue-threshold",
           "--min-tissue", "--overlap", "--batch-size", "--shard", "--min-pattern-tiles")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    slides = root / "slides"
    slides.mkdir()
    write_slide(slides / "good.tiff", SlideSpec(width=512, height=512, seed=1, variants=1))
    (slides / "bad.tiff").write_bytes(b"II*\x00 this is not a slide")
    (slides / "notes.txt").write_text("not a slide file: ignored")
    keras.utils.set_random_seed(0)
    model = build_classifier("vgg_tiny", 4, (16, 16, 3))
    export_for_serving(model, root / "student", input_size=16, class_names=("NC", "G3", "G4", "G5"), factor=8,
                       mode="native", metadata={"teacher_mag": 10.0, "student_mag": 1.25})
    return root, slides


def test_help_documents_every_option():
    done = subprocess.run([sys.executable, "-m", "ird_tf.experiments.slide", "-h"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    for option in OPTIONS:
        assert option in done.stdout, option


@pytest.mark.parametrize(("args", "message"), [
    (["--overlap", "1.5"], "argument --overlap"),
    (["--shard", "3/2"], "argument --shard"),
    (["--shard", "x"], "argument --shard"),
    (["--batch-size", "0"], "argument --batch-size"),
    (["--tissue-threshold", "2"], "argument --tissue-threshold"),
    (["--mpp", "-1"], "argument --mpp"),
    (["--backend", "bioformats"], "argument --backend"),
    (["--mpp", "abc"], "argument --mpp"),
])
def test_bad_options_exit_2_naming_the_option(data, tmp_path, capsys, args, message):
    root, slides = data
    with pytest.raises(SystemExit) as e:
        main([str(slides / "good.tiff"), "--model", str(root / "student"), "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()[-1]) > 20


def test_missing_model_and_slides_are_option_errors(data, tmp_path, capsys):
    root, slides = data
    for args, message in (([str(slides), "--model", str(tmp_path / "none")], "argument --model"),
                          ([str(tmp_path / "none.tiff"), "--model", str(root / "student")], "SLIDE"),
                          ([str(slides), "--model", str(root)], "argument --model")):
        with pytest.raises(SystemExit) as e:
            main([*args, "--out", str(tmp_path / "o")])
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_bad_slide_is_named_and_the_good_one_finishes(data, tmp_path, capsys):
    root, slides = data
    out = tmp_path / "out"
    assert main([str(slides), "--model", str(root / "student"), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "error: slide bad.tiff:" in captured.err and "cannot be opened" in captured.err
    assert "good.tiff: done" in captured.out
    assert (out / "good" / "done.json").is_file() and not (out / "bad" / "done.json").exists()
    with open(out / "slides.csv") as f:
        rows = {r["slide"]: r for r in csv.DictReader(f)}
    assert rows["good.tiff"]["status"] == "done" and rows["bad.tiff"]["status"] == "failed"
    assert set(rows) == {"good.tiff", "bad.tiff"}  # notes.txt is not a slide


def test_mpp_override_guard(data, tmp_path, capsys):
    root, slides = data
    args = [str(slides / "good.tiff"), "--model", str(root / "student")]
    assert main([*args, "--out", str(tmp_path / "a"), "--mpp", "4"]) == 1
    assert "--force-mpp" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "b"), "--mpp", "0.5", "--force-mpp"]) == 0
    summary = json.loads((tmp_path / "b" / "good" / "summary.json").read_text())
    # level 0 said to be 0.5 µm/px: the 8 µm/px Student reads downsample 16, the tile is 256 px
    assert (summary["mpp0"], summary["mpp_source"], summary["level"], summary["tile_level0_px"]) == (
        0.5, "--mpp", 4, 256.0)
    assert main([*args, "--out", str(tmp_path / "c"), "--mpp", "1.5"]) == 0  # within 2x: accepted
