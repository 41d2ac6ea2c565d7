"""The slide task on real synthetic slides: the same patch gives the same probabilities by every route
(Keras on the training view, each signature of an export loaded in a fresh process, slide inference
from an export and from a run directory), the Teacher on the same grid, resume after a half-done
slide, changed settings, shards, streaming.

Tolerances: 1e-5 between routes that see the same pixels. The slide's 1.25x level stores the block
mean of level 0 rounded to uint8 (at most 0.5/255 per pixel from the exact mean the training view
computes from the 10x patch); the test shows that this rounding is the whole difference (1e-5 once
rounded) and bounds its effect at 0.05 for a random model made very sensitive (logits spread over
several units, so a wrong preprocessing would show)."""

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ird_tf.config import ExperimentConfig
from ird_tf.data.slides import open_slide
from ird_tf.data.synthetic.slide import SlideSpec, cell_labels, cell_patch, write_slide
from ird_tf.data.view import InputView
from ird_tf.export.serving import export_for_serving
from ird_tf.models import build_classifier
from ird_tf.runs.slide import SlideSettings, load_model, run_slides

NAMES = ("NC", "G3", "G4", "G5")
SPECS = [SlideSpec(width=1024, height=768, seed=s, compression="deflate", variants=1) for s in (3, 4)]
SIZE, FACTOR = 128, 8  # the 10x patch of benchmark v1; the Student at 1.25x, upsampled (the paper's mode)

FRESH = """
import sys
import numpy as np
import tensorflow as tf
export, d = sys.argv[1:]
z = np.load(f"{d}/inputs.npz")
m = tf.saved_model.load(export)
out = {
    "default": m.signatures["serving_default"](images=tf.constant(z["native"]))["probabilities"].numpy(),
    "high": m.signatures["predict_high_mag"](images=tf.constant(z["high"]))["probabilities"].numpy(),
    "bytes": m.signatures["predict_image_bytes"](image_bytes=tf.constant(
        [open(f"{d}/high.png", "rb").read(), open(f"{d}/native.png", "rb").read()]))["probabilities"].numpy(),
}
np.savez(f"{d}/fresh.npz", **out)
"""


def _sensitive(model, x):
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    pre = model(x, training=False)["logits"].numpy() - bias
    scale = 3.0 / max(pre.std(axis=0).mean(), 1e-6)
    layer.set_weights([kernel * scale, -scale * pre.mean(axis=0)])


def _run_dir(root: Path, model, role: str, student_mag: float) -> Path:
    cfg = ExperimentConfig()
    cfg.data = replace(cfg.data, image_size=SIZE, teacher_mag=10.0, student_mag=student_mag, mode="upsampled",
                       class_names=NAMES)
    cfg.model = replace(cfg.model, backbone="vgg_tiny")
    run = root / role
    run.mkdir(parents=True)
    cfg.save(run / "config.yaml")
    model.save_weights(str(run / "best.weights.h5"))
    return run


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("slide_task")
    slides = []
    for i, spec in enumerate(SPECS):
        slides.append(root / f"s{i}.tiff")
        write_slide(slides[-1], spec)
    labels = cell_labels(SPECS[0])
    row, col = (int(v) for v in np.argwhere(labels == 2)[0])  # a G4 cell of slide 0
    high = cell_patch(SPECS[0], row, col).astype(np.float32) / np.float32(255.0)
    with open_slide(slides[0], "tiffslide") as s:
        native_u8 = s.read(3, col * SIZE // FACTOR, row * SIZE // FACTOR, SIZE // FACTOR, SIZE // FACTOR)
    native = native_u8.astype(np.float32) / np.float32(255.0)

    keras.utils.set_random_seed(7)
    student = build_classifier("vgg_tiny", 4, (SIZE, SIZE, 3))
    view = InputView("lr", SIZE, FACTOR, "upsampled")
    probe = np.stack([cell_patch(SPECS[0], r, c) for r, c in np.argwhere(labels >= 0)[:8]]) / np.float32(255)
    _sensitive(student, view.from_high(tf.constant(probe, tf.float32)))
    teacher = build_classifier("vgg_tiny", 4, (SIZE, SIZE, 3))
    _sensitive(teacher, tf.constant(probe, tf.float32))
    export = export_for_serving(student, root / "saved_models" / "student", input_size=SIZE,
                                class_names=NAMES, factor=FACTOR, mode="upsampled",
                                metadata={"teacher_mag": 10.0, "student_mag": 1.25})
    d = root / "fresh"
    d.mkdir()
    np.savez(d / "inputs.npz", native=native[None], high=high[None])
    Image.fromarray(cell_patch(SPECS[0], row, col)).save(d / "high.png")
    Image.fromarray(native_u8).save(d / "native.png")
    fresh = subprocess.Popen([sys.executable, "-c", FRESH, str(export), str(d)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    runs = SimpleNamespace(student=_run_dir(root / "runs", student, "student", 1.25),
                           teacher=_run_dir(root / "runs", teacher, "teacher", 1.25))
    _, err = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, err[-3000:]
    with np.load(d / "fresh.npz") as z:
        answers = dict(z)
    return SimpleNamespace(root=root, slides=slides, labels=labels, cell=(row, col), high=high, native=native,
                           student=student, teacher=teacher, view=view, export=export.parent, runs=runs,
                           fresh=answers)


def _probs(model, x):
    return tf.nn.softmax(model(x, training=False)["logits"]).numpy()


def _table(out: Path, slide: str) -> list[dict]:
    with open(out / slide / "tiles.csv") as f:
        return list(csv.DictReader(f))


def _tile_probs(rows, x, y, prefix="prob_"):
    (row,) = [r for r in rows if (int(r["x"]), int(r["y"])) == (x, y)]
    return np.array([float(row[f"{prefix}{c}"]) for c in NAMES])


def test_the_same_patch_by_every_route(setup, tmp_path):
    s = setup
    keras_high = _probs(s.student, s.view.from_high(tf.constant(s.high[None])))[0]
    keras_native = _probs(s.student, s.view.prepare(tf.constant(s.native[None]), "native"))[0]
    # the stored 1.25x level is the uint8 rounding of the training view's block mean, and that rounding
    # is the only difference between the two inputs
    u8 = np.round(s.high * 255).astype(np.float64)  # the 10x patch's integers
    block = u8.reshape(SIZE // FACTOR, FACTOR, SIZE // FACTOR, FACTOR, 3).mean(axis=(1, 3))
    rounded = (np.floor(block + 0.5) / 255).astype(np.float32)[None]  # half up, as the writer rounds
    np.testing.assert_array_equal(rounded, s.native[None])
    np.testing.assert_allclose(_probs(s.student, s.view.from_native(tf.constant(rounded, tf.float32)))[0],
                               keras_native, atol=1e-5)
    np.testing.assert_allclose(keras_native, keras_high, atol=0.05)
    assert np.ptp(keras_high) > 0.05  # the answer depends on the image: a wrong route would show
    fresh = s.fresh
    np.testing.assert_allclose(fresh["high"][0], keras_high, atol=1e-5)
    np.testing.assert_allclose(fresh["bytes"][0], keras_high, atol=1e-5)
    np.testing.assert_allclose(fresh["default"][0], keras_native, atol=1e-5)
    np.testing.assert_allclose(fresh["bytes"][1], keras_native, atol=1e-5)
    row, col = s.cell
    settings = SlideSettings(backend="tiffslide", batch_size=5)
    for model_dir, out in ((s.export, tmp_path / "by_export"), (s.runs.student, tmp_path / "by_run")):
        run_slides(s.slides[:1], out, load_model(model_dir), None, settings)
        rows = _table(out, "s0")
        np.testing.assert_allclose(_tile_probs(rows, col * SIZE, row * SIZE), keras_native, atol=1e-5)
        # every tile: the grid is the cells' grid, and each answer is the model's on the stored level
        tissue_cells = {(int(c) * SIZE, int(r) * SIZE) for r, c in np.argwhere(s.labels >= 0)}
        assert {(int(r["x"]), int(r["y"])) for r in rows} == tissue_cells
        assert {r["mpp"] for r in rows} == {"8.0"} and {r["level"] for r in rows} == {"3"}
    by_export, by_run = _table(tmp_path / "by_export", "s0"), _table(tmp_path / "by_run", "s0")
    for a, b in zip(by_export, by_run, strict=True):
        assert (a["x"], a["y"], a["class"]) == (b["x"], b["y"], b["class"])
        np.testing.assert_allclose([float(a[f"prob_{c}"]) for c in NAMES],
                                   [float(b[f"prob_{c}"]) for c in NAMES], atol=1e-5)


def test_teacher_on_the_same_grid_and_the_summary(setup, tmp_path):
    s = setup
    out = tmp_path / "out"
    result = run_slides(s.slides[:1], out, load_model(s.export), load_model(s.runs.teacher, "teacher"),
                        SlideSettings(backend="openslide"))
    assert result.done == ["s0.tiff"] and not result.failed
    row, col = s.cell
    rows = _table(out, "s0")
    want = _probs(s.teacher, tf.constant(s.high[None]))[0]  # the 10x patch, read from level 0
    np.testing.assert_allclose(_tile_probs(rows, col * SIZE, row * SIZE, "teacher_prob_"), want, atol=1e-5)
    summary = json.loads((out / "s0" / "summary.json").read_text())
    assert (summary["level"], summary["mpp_read"], summary["teacher"]["level"]) == (3, 8.0, 0)
    assert summary["tiles"] == int((s.labels >= 0).sum()) == sum(summary["counts"].values())
    g = summary["grading"]
    assert g["rule"] == "biopsy" and (g["primary"] is None) == (g["grade_group"] is None)
    fc = json.loads((out / "s0" / "tiles.geojson").read_text())
    assert len(fc["features"]) == summary["tiles"]
    assert {f["properties"]["objectType"] for f in fc["features"]} == {"detection"}
    heat = Image.open(out / "s0" / "heatmap.png")
    assert heat.size[0] > 200
    tissue = np.asarray(Image.open(out / "s0" / "tissue.png"))
    assert tissue.shape == (768 // 16, 1024 // 16)  # the 16 µm/px thumbnail


def test_resume_skips_done_slides_and_redoes_half_done_ones(setup, tmp_path, capsys):
    s = setup
    out = tmp_path / "out"
    model = load_model(s.export)
    settings = SlideSettings(backend="tiffslide")
    first = run_slides(s.slides, out, model, None, settings)
    assert first.done == ["s0.tiff", "s1.tiff"]
    csv_before = (out / "s1" / "tiles.csv").read_text()
    # s0 half-done: outputs written, the process killed before its marker
    (out / "s0" / "done.json").unlink()
    (out / "s0" / "tiles.csv").write_text("torn")
    capsys.readouterr()
    again = run_slides(s.slides, out, model, None, settings)
    assert (again.done, again.skipped) == (["s0.tiff"], ["s1.tiff"])
    log = capsys.readouterr().out
    assert "s1.tiff: done before with the same settings, skipped" in log and "[1/2] s0.tiff: started" in log
    assert _table(out, "s0")[0]["x"] != "torn" and (out / "s1" / "tiles.csv").read_text() == csv_before
    changed = run_slides(s.slides, out, model, None, replace(settings, overlap=0.5))
    assert changed.done == ["s0.tiff", "s1.tiff"]  # another setting: another digest, redone
    assert len(_table(out, "s1")) > csv_before.count("\n") - 1
    with open(out / "slides.csv") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["done", "done"]


def test_shards_split_the_slides(setup, tmp_path):
    s = setup
    model = load_model(s.export)
    one = run_slides(s.slides, tmp_path, model, None, SlideSettings(), shard=(1, 2))
    two = run_slides(s.slides, tmp_path, model, None, SlideSettings(), shard=(2, 2))
    assert (one.done, two.done) == (["s0.tiff"], ["s1.tiff"])
    with open(tmp_path / "slides.csv") as f:
        assert [r["slide"] for r in csv.DictReader(f)] == ["s0.tiff", "s1.tiff"]


def test_memory_does_not_hold_the_slide(setup, tmp_path, monkeypatch):
    """Streaming: no read asks for more than one region (2048 px a side plus a tile), whatever the slide."""
    from ird_tf.data.slides import backends

    biggest = []
    real = backends.Slide.read

    def spy(self, level, x, y, width, height):
        biggest.append(width * height)
        return real(self, level, x, y, width, height)

    monkeypatch.setattr(backends.Slide, "read", spy)
    run_slides(setup.slides[:1], tmp_path, load_model(setup.export), None,
               SlideSettings(backend="tiffslide"))
    thumb = (1024 // 16) * (768 // 16)
    assert max(biggest) <= max(thumb, (2048 + 2 * SIZE) ** 2)
    assert len(biggest) >= 2


def test_default_batch_follows_the_network_input():
    from ird_tf.runs.slide import batch_for

    # 64 inputs of 128 px in pixels, between 64 and 1024 inputs: a 1.25x Student's 16 px inputs go
    # 1024 at a time, a Teacher's (or an upsampled Student's) 128 px ones 64, large ones never fewer
    assert [batch_for(s) for s in (16, 32, 64, 128, 512)] == [1024, 1024, 256, 64, 64]
