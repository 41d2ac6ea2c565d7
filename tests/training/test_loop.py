"""fit: run directory, best-by-kappa checkpoint, history, TensorBoard (read back with TensorBoard's own
event reader: tags, descriptions, steps, images, hparams), done marker; divergence stop; resume after
SIGKILL in a real subprocess."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from ird_tf.config import LossConfig, preset
from ird_tf.evaluation.metrics import classification_metrics, predict_proba
from ird_tf.models import build_classifier
from ird_tf.scoring import json_safe
from ird_tf.training import Distiller, Supervised, TrainingDiverged, board, fit
from ird_tf.training.callbacks import Backup, BestCheckpoint, validation_scores

S, B, C = 32, 8, 4


def data(seed=0, n=16):
    rng = np.random.default_rng(seed)
    hr = rng.random((n, S, S, 3), dtype=np.float32)
    return {"hr": hr, "lr": hr[:, ::2, ::2]}, rng.integers(0, C, n).astype(np.int32)


def np_quadratic_kappa(y, p, k):
    o = np.zeros((k, k))
    np.add.at(o, (y, p), 1)
    w = (np.subtract.outer(np.arange(k), np.arange(k)) ** 2) / (k - 1) ** 2
    e = np.outer(o.sum(1), o.sum(0)) / o.sum()
    return 1 - (w * o).sum() / (w * e).sum()


def test_validation_scores_against_formulas():
    y = np.array([0, 1, 2, 3, 3, 2, 1, 0])
    logits = np.eye(4)[[0, 1, 2, 2, 3, 1, 1, 3]] * 3.0
    scores = validation_scores(y, logits, 4)
    p = logits.argmax(1)
    assert scores["kappa"] == pytest.approx(np_quadratic_kappa(y, p, 4))
    assert scores["accuracy"] == pytest.approx(np.mean(p == y))
    recalls = [np.mean(p[y == c] == c) for c in range(4)]
    assert scores["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    z = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    assert scores["loss"] == pytest.approx(-z[np.arange(8), y].mean())
    f1 = [2 * np.sum((p == c) & (y == c)) / (np.sum(p == c) + np.sum(y == c)) for c in range(4)]
    assert scores["macro_f1"] == pytest.approx(np.mean(f1))
    assert np.isnan(validation_scores(np.zeros(4, int), np.tile([1.0, 0, 0, 0], (4, 1)), 4)["kappa"])


@pytest.mark.parametrize("y, pred", [
    ([0, 0, 0, 0], [0, 0, 0, 0]),  # one class in labels and predictions: kappa undefined
    ([0, 1, 0, 1, 1], [0, 1, 1, 1, 2]),  # three of four classes present: macro F1 over those
])
def test_validation_scores_are_the_evaluation_metrics(y, pred):
    """history.csv/best.json (validation_scores) and metrics_<split>.json (classification_metrics) use
    one definition: same predictions, same numbers, NaN included."""
    logits = np.eye(C)[pred] * 3.0
    val = validation_scores(np.array(y), logits, C)
    evaluated = classification_metrics(y, logits, C)
    for key in ("balanced_accuracy", "kappa", "macro_f1", "accuracy"):
        np.testing.assert_equal(val[key], evaluated[key], err_msg=key)


def test_best_checkpoint_never_picks_nan_over_a_number(tmp_path):
    net = build_classifier("vgg_tiny", C, (S, S, 3))
    best = BestCheckpoint(tmp_path)
    best.set_model(net)
    chosen = []
    best.on_train_begin()
    for epoch, kappa in enumerate([np.nan, np.nan, 0.2, np.nan, 0.1, 0.3]):
        best.on_epoch_end(epoch, {"val_kappa": kappa})
        chosen.append(json.loads((tmp_path / "best.json").read_text())["epoch"])
    assert chosen == [1, 1, 3, 3, 3, 6]
    # all undefined: the first epoch is kept, its value is null in strict JSON, and a resume reads it back
    all_nan = tmp_path / "all_nan"
    all_nan.mkdir()
    best = BestCheckpoint(all_nan)
    best.set_model(net)
    best.on_train_begin()
    for epoch in range(2):
        best.on_epoch_end(epoch, {"val_kappa": np.nan, "val_loss": 1.0})
    saved = json.loads((all_nan / "best.json").read_text())
    assert (saved["epoch"], saved["value"], saved["logs"]["val_kappa"]) == (1, None, None)
    assert (all_nan / "best.weights.h5").is_file()
    best.on_train_begin()
    best.on_epoch_end(2, {"val_kappa": 0.0})
    assert json.loads((all_nan / "best.json").read_text())["epoch"] == 3


def test_best_json_agrees_with_the_evaluation_of_the_same_weights(tmp_path):
    """A tiny run whose validation split has two of the four classes (the macro-F1 rules of the old
    code differed there): best.json's scores equal classification_metrics of best.weights.h5 on the
    same split, computed the way metrics_val.json is."""
    keras.utils.set_random_seed(5)
    x, y = data(6, 16)
    val_x, _ = data(7, 12)
    val_y = np.array([0, 1] * 6, np.int32)
    student = build_classifier("vgg_tiny", C, (S // 2, S // 2, 3), name="alone")
    model = Supervised(student, input_key="lr")
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(B).repeat()
    val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(B)
    fit(model, train, val, run_dir=tmp_path, epochs=2, steps_per_epoch=2, num_classes=C, val_input_key="lr")
    best = json.loads((tmp_path / "best.json").read_text())
    net = build_classifier("vgg_tiny", C, (S // 2, S // 2, 3))
    net.load_weights(str(tmp_path / "best.weights.h5"))
    y_true, y_prob = predict_proba(net, val, input_key="lr")
    evaluated = classification_metrics(y_true, y_prob, C)
    as_json = json.loads(json.dumps(json_safe(evaluated)))
    assert best["value"] == as_json["kappa"]  # both null when undefined
    for key in ("balanced_accuracy", "kappa", "macro_f1", "accuracy"):
        assert best["logs"][f"val_{key}"] == pytest.approx(as_json[key], abs=1e-9), key


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    keras.utils.set_random_seed(3)
    run_dir = tmp_path_factory.mktemp("run")
    teacher = build_classifier("vgg_tiny", C, (S, S, 3), name="t")
    student = build_classifier("vgg_tiny", C, (S // 2, S // 2, 3), name="s")
    model = Distiller(teacher, student, LossConfig(ce=1.0, fm=0.1, at=10.0))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    x, y = data(0, 32)
    val_x, val_y = data(1, 24)
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(B).repeat()
    val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(B)
    history = fit(model, train, val, run_dir=run_dir, epochs=3, steps_per_epoch=2, num_classes=C,
                  attention_images=2, class_names=("NC", "G3", "G4", "G5"))
    return model, train, val, (val_x, val_y), run_dir, history


def test_fit_writes_history_checkpoints_and_done_marker(finished_run):
    model, _, _, (val_x, val_y), run_dir, history = finished_run
    assert history["epoch"] == [1, 2, 3]
    for key in ("loss", "ce", "fm", "at", "accuracy", "learning_rate", "val_loss", "val_accuracy",
                "val_balanced_accuracy", "val_kappa", "val_macro_f1"):
        assert len(history[key]) == 3 and np.all(np.isfinite(history[key])), key
    assert history["learning_rate"] == pytest.approx([3e-3] * 3)
    assert (run_dir / "done.json").is_file() and (run_dir / "backup" / "latest.json").is_file()

    best = json.loads((run_dir / "best.json").read_text())
    assert best["epoch"] == 1 + int(np.argmax(history["val_kappa"]))
    assert best["value"] == pytest.approx(max(history["val_kappa"]))

    def kappa_of(weights_file):
        net = build_classifier("vgg_tiny", C, (S // 2, S // 2, 3))
        net.load_weights(str(weights_file))
        pred = net.predict(val_x["lr"], verbose=0)["logits"].argmax(1)
        return np_quadratic_kappa(val_y, pred, C) if len(set(pred) | set(val_y)) > 1 else 0.0

    assert kappa_of(run_dir / "best.weights.h5") == pytest.approx(best["value"], abs=1e-6)
    assert kappa_of(run_dir / "last.weights.h5") == pytest.approx(history["val_kappa"][-1], abs=1e-6)
    # fit leaves the best weights in the student
    best_net = build_classifier("vgg_tiny", C, (S // 2, S // 2, 3))
    best_net.load_weights(str(run_dir / "best.weights.h5"))
    for a, b in zip(best_net.weights, model.student.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_backup_is_saved_once_the_interval_has_passed_and_after_the_last_epoch(tmp_path):
    """Epochs of 4 s on a fake clock, a 10 s interval: saved after epochs 3 (12 s), 6 (24 s) and 7 (the
    last); last.weights.h5 with each epoch-end save; 0 s: after every epoch."""
    net = build_classifier("vgg_tiny", C, (S // 2, S // 2, 3))
    model = Supervised(net, input_key="lr")
    for seconds, expected in ((10.0, [3, 6, 7]), (0.0, [1, 2, 3, 4, 5, 6, 7])):
        now = [0.0]
        run = tmp_path / f"every{seconds:g}"
        backup = Backup(run / "backup", every_seconds=seconds, last_weights=run / "last.weights.h5",
                        clock=lambda now=now: now[0])
        backup.set_model(model)
        backup.set_params({"epochs": 7, "steps": 1, "verbose": 0})
        backup.on_train_begin()
        saved = []
        for epoch in range(7):
            now[0] += 4.0
            backup.on_epoch_end(epoch)
            if (run / "backup" / "latest.json").is_file():
                meta = json.loads((run / "backup" / "latest.json").read_text())
                if meta["epoch"] == epoch + 1:
                    saved.append(meta["epoch"])
            assert (run / "last.weights.h5").is_file() == bool(saved)
        assert saved == expected, seconds


class _Killed(Exception):
    pass


class _KillAtEpochEnd(keras.callbacks.Callback):
    """Stands for a SIGKILL at the end of epoch ``n`` (1-based), before that epoch's backup."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.n:
            raise _Killed


def test_a_run_killed_before_its_first_backup_resumes_from_the_start_to_the_same_history(tmp_path):
    """With a long checkpoint interval a run killed in epoch 3 of 4 has no backup yet (but has its best
    checkpoint); the same call starts again from epoch 1 and ends with the uninterrupted run's history."""
    x, y = data(8, 32)
    val_x, val_y = data(9, 16)
    stream = tf.data.Dataset.from_tensor_slices((x, y)).batch(B).repeat()
    val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(B)

    def run(run_dir, seconds, extra=()):
        keras.utils.set_random_seed(11)
        model = Supervised(build_classifier("vgg_tiny", C, (S // 2, S // 2, 3)), input_key="lr")
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        return fit(model, lambda start: stream.skip(start), val, run_dir=run_dir, epochs=4, steps_per_epoch=2,
                   num_classes=C, val_input_key="lr", checkpoint_seconds=seconds, extra_callbacks=extra)

    expected = run(tmp_path / "whole", 0.0)
    with pytest.raises(_Killed):
        run(tmp_path / "killed", 1e9, extra=(_KillAtEpochEnd(3),))
    assert not (tmp_path / "killed" / "backup").exists()
    assert not (tmp_path / "killed" / "last.weights.h5").exists()
    assert (tmp_path / "killed" / "best.weights.h5").is_file()
    resumed = run(tmp_path / "killed", 1e9)
    assert resumed == expected
    assert json.loads((tmp_path / "killed" / "backup" / "latest.json").read_text())["epoch"] == 4


def read_board(tb_dir: Path):
    """TensorBoard's own reader over a run's tb/ folder (every event file in it)."""
    acc = event_accumulator.EventAccumulator(str(tb_dir), size_guidance={event_accumulator.TENSORS: 0})
    return acc.Reload()


def test_tensorboard_tags_descriptions_epochs_from_one_and_titled_attention_images(finished_run):
    run_dir, history = finished_run[4], finished_run[5]
    assert [p.name for p in (run_dir / "tb").iterdir() if p.is_dir()] == []  # one run, no train/ validation/
    acc = read_board(run_dir / "tb")
    tags = set(acc.Tags()["tensors"])
    scalars = {"train/loss_total", "train/accuracy", "val/cross_entropy", "val/accuracy",
               "val/balanced_accuracy", "val/kappa", "val/macro_f1", "optimizer/learning_rate",
               *(f"train_terms{kind}/{t}" for kind in ("", "_weighted") for t in ("ce", "fm", "at"))}
    assert tags == scalars | {"attention/validation_patches"}
    for tag in tags:
        assert acc.SummaryMetadata(tag).summary_description, f"{tag} has no description"
        assert [e.step for e in acc.Tensors(tag)] == [1, 2, 3], tag  # epochs as in history.csv
    describe = acc.SummaryMetadata
    assert "1·ce + 0.1·fm + 10·at" in describe("train/loss_total").summary_description
    assert "NOT comparable with val/cross_entropy" in describe("train/loss_total").summary_description
    assert "weight in train/loss_total is 10" in describe("train_terms/at").summary_description
    assert describe("train_terms_weighted/fm").summary_description.startswith("0.1·fm")

    def values(tag):
        return [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]

    # the values are history.csv's: same epochs, same numbers; weighted terms add up to the total
    for tag, column in (("train/loss_total", "loss"), ("train_terms/at", "at"), ("val/kappa", "val_kappa"),
                        ("val/cross_entropy", "val_loss"), ("optimizer/learning_rate", "learning_rate")):
        np.testing.assert_allclose(values(tag), history[column], rtol=1e-6, err_msg=tag)
    np.testing.assert_allclose(values("train_terms_weighted/at"), 10 * np.array(history["at"]), rtol=1e-6)
    weighted = sum(np.array(values(f"train_terms_weighted/{t}")) for t in ("ce", "fm", "at"))
    np.testing.assert_allclose(weighted, values("train/loss_total"), rtol=1e-5)

    images = acc.Tensors("attention/validation_patches")
    assert describe("attention/validation_patches").plugin_data.plugin_name == "images"
    for event in images:
        width, height, *pngs = tf.make_ndarray(event.tensor_proto)
        assert len(pngs) == 2  # two patches each epoch
        assert int(width) > 4 * S and int(height) > S  # four panels with titles and captions around them
        assert tf.io.decode_png(pngs[0]).shape == (int(height), int(width), 3)


def test_attention_panels_at_four_evenly_spaced_epochs_ending_with_the_last():
    from ird_tf.training.board import panel_epochs

    assert panel_epochs(8, 4) == {2, 4, 6, 8}
    assert panel_epochs(20, 4) == {5, 10, 15, 20}
    assert panel_epochs(3, 4) == {1, 2, 3}  # a short run: every epoch
    assert panel_epochs(5, 4) == {1, 2, 4, 5}  # round(1.25), round(2.5) (to even), round(3.75), 5
    assert panel_epochs(8, 0) == set()


def test_a_reused_panel_canvas_draws_what_a_fresh_one_draws():
    """The canvas kept across patches and epochs carries nothing of the patch drawn before (image,
    its size, captions, colours, title) into the next."""
    rng = np.random.default_rng(0)
    big = [rng.random((40, 40, 3)) for _ in range(4)]
    small = [rng.random((8, 8, 3)) for _ in range(4)]
    first = {"teacher": ("teacher: p(G3) = 0.70\ntop class G3 (0.70)", board.CORRECT_COLOUR),
             "student": ("student: p(G3) = 0.30\ntop class G4 (0.50)", board.WRONG_COLOUR)}
    second = {"teacher": ("t", board.WRONG_COLOUR), "student": ("s", board.CORRECT_COLOUR)}
    kept = board.PanelCanvas()
    drawn_first = kept.draw(big, "first patch", first)
    again = kept.draw(small, "second patch", second)
    fresh = board.PanelCanvas().draw(small, "second patch", second)
    np.testing.assert_array_equal(again, fresh)
    assert again.shape == drawn_first.shape and np.abs(again - drawn_first).max() > 0.1


def test_panel_titles_name_true_class_map_class_and_both_probabilities():
    names = ["NC", "G3", "G4", "G5"]
    p_teacher = np.array([[0.1, 0.7, 0.1, 0.1]])
    p_student = np.array([[0.1, 0.3, 0.5, 0.1]])
    (panel,) = board.panel_titles(np.array([1]), np.array([1]), p_teacher, p_student, names)
    assert panel["title"] == "true class: G3 · maps of class G3 (the true class)"
    green, red = board.CORRECT_COLOUR, board.WRONG_COLOUR
    assert panel["captions"]["teacher"] == ("teacher: p(G3) = 0.70\ntop class G3 (0.70)", green)
    assert panel["captions"]["student"] == ("student: p(G3) = 0.30\ntop class G4 (0.50)", red)
    (no_label,) = board.panel_titles(None, np.array([1]), p_teacher, p_student, names)
    assert no_label["title"] == "true class: unknown · map of class G3 (teacher's prediction)"


def test_hparams_and_final_scores_are_read_back_by_tensorboard(tmp_path):
    from tensorboard.plugins.hparams import metadata as hp_metadata

    cfg = preset("cpu")
    cfg.run.seed, cfg.data.student_mag, cfg.loss.at = 32, 1.25, 5.0
    hparams = board.run_hparams(cfg, "distill")
    assert hparams == {
        "role": "student", "magnification": 1.25, "teacher_magnification": 10.0, "mode": "upsampled",
        "method": "ce+fm+at", "label_free": False, "w_ce": 1.0, "w_fm": 0.1, "w_at": 5.0, "w_zk_at": 0.0,
        "w_kd": 0.0, "w_fmap": 0.0, "at_norm": "minmax", "at_distance": "l2", "backbone": "vgg_tiny",
        "init": "none", "seed": 32, "epochs": cfg.optim.epochs, "learning_rate": cfg.optim.learning_rate,
        "batch_size": cfg.data.batch_size, "data": "synthetic", "fold": "Val1"}
    assert set(hparams) == set(board.HPARAMS)
    teacher = board.run_hparams(cfg, "teacher")
    assert (teacher["role"], teacher["magnification"], teacher["method"], teacher["w_at"],
            teacher["epochs"]) == ("teacher", 10.0, "teacher", 0.0, cfg.optim.teacher_epochs)

    tb = tmp_path / "vgg_tiny_1.25x_run" / "tb"
    metrics = {"val": {"balanced_accuracy": 0.5, "kappa": float("nan"), "macro_f1": 0.4, "accuracy": 0.5,
                       "confusion_matrix": [[1]]},
               "test": {"balanced_accuracy": 0.75, "kappa": 0.6, "macro_f1": 0.7, "accuracy": 0.8}}
    summary = board.write_hparams(tb, hparams, metrics, settings=cfg.to_dict())
    assert summary == tb / "hparams"  # its own folder: the training curves in tb/ are no HParams metrics
    acc = read_board(summary)
    content = acc.PluginTagToContent("hparams")
    assert set(content) == {hp_metadata.SESSION_START_INFO_TAG}  # TensorBoard derives the experiment
    session = hp_metadata.parse_session_start_info_plugin_data(content[hp_metadata.SESSION_START_INFO_TAG])
    got = {k: getattr(v, v.WhichOneof("kind")) for k, v in session.hparams.items()}
    assert got == {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                   for k, v in hparams.items()}
    assert "vgg_tiny_1.25x_run" in str(session)  # the trial id: the run directory's name
    scalars = set(acc.Tags()["tensors"]) - {hp_metadata.SESSION_START_INFO_TAG}
    assert scalars == {"run/settings", *(f"final/{n}" for n in board.FINAL_METRICS)}
    assert set(board.FINAL_METRICS) == {f"{split}_{score}" for split in ("val", "test")
                                        for score in ("balanced_accuracy", "kappa")}

    def last(tag):
        (event,) = acc.Tensors(tag)
        return event.step, float(tf.make_ndarray(event.tensor_proto))

    assert last("final/test_kappa") == (cfg.optim.epochs, pytest.approx(0.6))
    assert np.isnan(last("final/val_kappa")[1])  # undefined stays undefined
    assert acc.SummaryMetadata("final/test_kappa").summary_description.startswith("quadratic-weighted")
    text = tf.make_ndarray(acc.Tensors("run/settings")[0].tensor_proto).item().decode()
    assert "| w_at | 5.0 |" in text and "kd_temperature" in text


def test_finished_run_returns_at_once(finished_run, capsys):
    model, train, val, _, run_dir, history = finished_run
    serial = json.loads((run_dir / "backup" / "latest.json").read_text())["serial"]
    again = fit(model, train, val, run_dir=run_dir, epochs=3, steps_per_epoch=2, num_classes=C)
    assert "already finished" in capsys.readouterr().out
    assert again == history
    assert json.loads((run_dir / "backup" / "latest.json").read_text())["serial"] == serial


@pytest.mark.parametrize("wrapper", ["teacher", "distiller"])
def test_nan_loss_stops_with_a_clear_message_and_keeps_good_checkpoints(tmp_path, wrapper):
    keras.utils.set_random_seed(4)
    size, view = (S, "hr") if wrapper == "teacher" else (S // 2, "lr")
    net = build_classifier("vgg_tiny", C, (size, size, 3), name="n")
    if wrapper == "teacher":
        model = Supervised(net)
    else:  # the student (net) on the half-size view learns from a frozen teacher with CE + FM + AT+
        teacher = build_classifier("vgg_tiny", C, (S, S, 3), name="t")
        model = Distiller(teacher, net, LossConfig(ce=1.0, fm=0.1, at=10.0))
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    train = tf.data.Dataset.from_tensor_slices(data(2, 4 * B)).batch(B).repeat()
    val = tf.data.Dataset.from_tensor_slices(data(3, B)).batch(B)
    # epoch 1 is clean; from epoch 2 a learning rate of 1e30 blows the weights up
    blow_up = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 1e30 if epoch >= 1 else 1e-3)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step \d: .*loss=(nan|inf).*best\.weights\.h5"):
        fit(model, train, val, run_dir=tmp_path, epochs=3, steps_per_epoch=3, num_classes=C,
            extra_callbacks=(blow_up,))
    assert not (tmp_path / "done.json").exists()
    assert "diverged" in json.loads((tmp_path / "diverged.json").read_text())["message"]
    assert json.loads((tmp_path / "backup" / "latest.json").read_text())["epoch"] == 1
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 1
    for name in ("best.weights.h5", "last.weights.h5"):
        fresh = build_classifier("vgg_tiny", C, (size, size, 3))
        fresh.load_weights(str(tmp_path / name))
        assert all(np.all(np.isfinite(v.numpy())) for v in fresh.weights), name
        assert np.all(np.isfinite(fresh.predict(data(5, 4)[0][view], verbose=0)["logits"]))
    assert not all(np.all(np.isfinite(v.numpy())) for v in net.weights)  # the diverged state exists...
    rows = (tmp_path / "history.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # ...but only the good epoch was recorded


def test_datasets_that_cannot_feed_the_run_are_refused(tmp_path):
    model = Supervised(build_classifier("vgg_tiny", C, (S, S, 3)))
    finite = tf.data.Dataset.from_tensor_slices(data(0, 2 * B)).batch(B)
    with pytest.raises(ValueError, match=r"yields 2 batches but steps_per_epoch=3; .* must repeat"):
        fit(model, finite, finite, run_dir=tmp_path, epochs=1, steps_per_epoch=3, num_classes=C)
    with pytest.raises(ValueError, match="val_ds repeats forever"):
        fit(model, finite.repeat(), finite.repeat(), run_dir=tmp_path, epochs=1, steps_per_epoch=3,
            num_classes=C)
    assert not any(tmp_path.iterdir())


RESUME_SCRIPT = """
import json, sys, time
import keras, numpy as np, tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from ird_tf.config import LossConfig, preset
from ird_tf.models import build_classifier
from ird_tf.training import Distiller, fit

run_dir, pause = sys.argv[1], float(sys.argv[2])
keras.utils.set_random_seed(0)
S, B, C = 32, 4, 4
rng = np.random.default_rng(0)
hr = rng.random((16, S, S, 3), dtype=np.float32)
x, y = {"hr": hr, "lr": hr[:, ::2, ::2]}, rng.integers(0, C, 16).astype(np.int32)
train = tf.data.Dataset.from_tensor_slices((x, y)).batch(B).repeat()
val = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
model = Distiller(build_classifier("vgg_tiny", C, (S, S, 3), name="t"),
                  build_classifier("vgg_tiny", C, (S // 2, S // 2, 3), name="s"),
                  LossConfig(ce=1, fm=0.1, at=10))
model.compile(optimizer=keras.optimizers.Adam(1e-3))

class Pause(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(pause)

history = fit(model, train, val, run_dir=run_dir, epochs=4, steps_per_epoch=4, num_classes=C,
              backup_every_steps=2, extra_callbacks=(Pause(),), attention_images=0)
print("RESULT", json.dumps({"iterations": int(model.optimizer.iterations), "epochs": history["epoch"]}))
"""


@pytest.mark.large
@pytest.mark.timeout(120)
def test_sigkill_mid_epoch_then_same_command_resumes_and_finishes(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(RESUME_SCRIPT)
    run_dir = tmp_path / "run"
    latest = run_dir / "backup" / "latest.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir), "0.15"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            meta = json.loads(latest.read_text()) if latest.is_file() else {}
            if meta.get("epoch", 0) >= 1 and meta.get("step_in_epoch") == 2:  # mid-epoch backup of epoch 2+
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(latest.read_text())
    assert not (run_dir / "done.json").exists()

    done = subprocess.run([sys.executable, str(script), str(run_dir), "0"], env=env, capture_output=True,
                          text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming after epoch {killed_at['epoch']}" in done.stdout
    result = json.loads(done.stdout.split("RESULT", 1)[1])
    assert result["epochs"] == [1, 2, 3, 4]
    # optimizer state came back with the weights, its step count set back to the start of the replayed
    # epoch (so a learning-rate schedule ends where an uninterrupted run ends): 4 x 4 steps
    assert killed_at["step_in_epoch"] == 2
    assert result["iterations"] == 16
    assert json.loads((run_dir / "done.json").read_text())["epochs"] == 4
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 1 + 4
