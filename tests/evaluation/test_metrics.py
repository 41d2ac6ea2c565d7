"""Metrics against scikit-learn and hand-worked oracles; predictions of a tiny model; metric files."""

import csv
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as skm

from ird_tf.errors import DataError
from ird_tf.evaluation.metrics import (
    classification_metrics,
    format_table,
    predict_proba,
    summarize_seeds,
    write_metrics,
)
from ird_tf.models import build_classifier

NAMES = ("NC", "G3", "G4", "G5")
Y_TRUE = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 0, 2, 1])
Y_PRED = np.array([0, 1, 1, 1, 2, 2, 3, 3, 3, 2, 3, 0, 0, 1])


def test_metrics_match_sklearn():
    m = classification_metrics(Y_TRUE, Y_PRED, 4, NAMES)
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(Y_TRUE, Y_PRED))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(Y_TRUE, Y_PRED, weights="quadratic"))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert m["accuracy"] == pytest.approx(np.mean(Y_TRUE == Y_PRED))
    assert m["confusion_matrix"] == skm.confusion_matrix(Y_TRUE, Y_PRED).tolist()
    recall = skm.recall_score(Y_TRUE, Y_PRED, average=None)
    assert list(m["per_class_recall"]) == list(NAMES)
    np.testing.assert_allclose(list(m["per_class_recall"].values()), recall)
    assert m["n"] == len(Y_TRUE)
    # probabilities are arg-maxed
    probs = np.eye(4)[Y_PRED] * 0.7 + 0.05
    assert classification_metrics(Y_TRUE, probs, 4)["kappa"] == pytest.approx(m["kappa"])


def test_quadratic_kappa_worked_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 2, 2])
    c = 3
    observed = np.zeros((c, c))
    np.add.at(observed, (y_true, y_pred), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    i, j = np.indices((c, c))
    w = (i - j) ** 2 / (c - 1) ** 2
    kappa = 1 - (w * observed).sum() / (w * expected).sum()
    # O = [[1,1,0],[0,1,1],[0,0,2]]; E = every row [1/3, 2/3, 1]; Σw·O = 0.5, Σw·E = 2
    assert kappa == pytest.approx(0.75)
    assert classification_metrics(y_true, y_pred, c)["kappa"] == pytest.approx(0.75)


def test_absent_class_keeps_its_confusion_row_and_undefined_recall():
    y_true = np.array([0, 1, 1, 3, 3, 0])
    y_pred = np.array([0, 1, 3, 3, 3, 1])
    m = classification_metrics(y_true, y_pred, 4, NAMES)
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (4, 4)
    assert cm[2].sum() == 0 and cm[:, 2].sum() == 0 and cm.sum() == len(y_true)
    assert math.isnan(m["per_class_recall"]["G4"])
    assert m["per_class_recall"]["G5"] == 1.0
    assert classification_metrics([1, 1], [1, 1], 4)["confusion_matrix"][1] == [0, 2, 0, 0]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"y_pred holds classes outside 0\.\.3"):
        classification_metrics([0, 1], [0, 4], 4)
    with pytest.raises(ValueError, match="equal non-zero lengths"):
        classification_metrics([0, 1], [0], 4)
    with pytest.raises(ValueError, match="class_names has 2 names"):
        classification_metrics([0, 1], [0, 1], 4, ("a", "b"))


def test_predict_proba_on_tiny_model():
    keras.utils.set_random_seed(0)
    model = build_classifier("vgg_tiny", 4, (None, None, 3))
    rng = np.random.default_rng(0)
    hr = rng.random((7, 32, 32, 3), dtype=np.float32)
    lr = rng.random((7, 16, 16, 3), dtype=np.float32)
    y = np.array([0, 1, 2, 3, 0, 1, 2], dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices(({"hr": hr, "lr": lr}, y)).batch(3)  # last batch is short

    for key, images in (("lr", lr), ("hr", hr)):
        y_true, y_prob = predict_proba(model, ds, input_key=key)
        logits = model.predict(images, verbose=0)["logits"].astype(np.float64)
        want = np.exp(logits - logits.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        np.testing.assert_array_equal(y_true, y)
        assert y_prob.shape == (7, 4) and y_prob.dtype == np.float32
        np.testing.assert_allclose(y_prob, want, atol=1e-5)

    with pytest.raises(DataError, match="input_key='x'"):
        predict_proba(model, ds, input_key="x")
    with pytest.raises(DataError, match="labeled=True"):
        predict_proba(model, tf.data.Dataset.from_tensor_slices({"hr": hr, "lr": lr}).batch(4))


def test_write_metrics_round_trip(tmp_path):
    m = classification_metrics([0, 1, 1, 3], [0, 1, 0, 3], 4, NAMES)
    m["split"] = "test"
    jp, cp = write_metrics(m, tmp_path / "a" / "metrics.json", tmp_path / "b" / "metrics.csv")
    back = json.loads(jp.read_text())
    assert back["confusion_matrix"] == m["confusion_matrix"]
    assert back["kappa"] == pytest.approx(m["kappa"])
    assert back["per_class_recall"]["G4"] is None  # NaN -> null, strict JSON
    with cp.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    for key in ("balanced_accuracy", "kappa", "macro_f1", "accuracy"):
        assert float(row[key]) == pytest.approx(m[key])
    assert row["split"] == "test" and row["n"] == "4"
    assert row["per_class_recall.G3"] == "0.5" and row["per_class_recall.G4"] == ""
    assert "confusion_matrix" not in row


def test_summarize_seeds_mean_std():
    runs = [
        {"balanced_accuracy": 0.80, "kappa": 0.70, "split": "test", "confusion_matrix": [[1]]},
        {"balanced_accuracy": 0.84, "kappa": 0.75, "split": "test", "confusion_matrix": [[1]]},
        {"balanced_accuracy": 0.83, "kappa": float("nan"), "split": "test", "confusion_matrix": [[1]]},
    ]
    s = summarize_seeds(runs)
    assert set(s) == {"balanced_accuracy", "kappa"}
    ba = np.array([0.80, 0.84, 0.83])
    assert s["balanced_accuracy"]["mean"] == pytest.approx(np.mean(ba))
    assert s["balanced_accuracy"]["std"] == pytest.approx(np.std(ba, ddof=1))
    assert s["balanced_accuracy"]["n"] == 3
    assert s["kappa"]["mean"] == pytest.approx(0.725) and s["kappa"]["n"] == 2
    assert s["kappa"]["std"] == pytest.approx(np.std([0.70, 0.75], ddof=1))
    assert summarize_seeds(runs, ddof=0)["balanced_accuracy"]["std"] == pytest.approx(np.std(ba))
    assert summarize_seeds(runs[:1])["balanced_accuracy"]["std"] == 0.0


def test_format_table_markdown():
    s = summarize_seeds([{"kappa": 0.7}, {"kappa": 0.8}])
    table = format_table(
        [{"model": "teacher 10x", "kappa": 0.81234, "ba": None},
         {"model": "student|2.5x", "kappa": s["kappa"]}],
        ["model", "kappa", "ba"],
        digits=3,
    )
    assert table.splitlines() == [
        "| model | kappa | ba |",
        "|---|---|---|",
        "| teacher 10x | 0.812 | n/a |",
        f"| student\\|2.5x | 0.750 ± {np.std([0.7, 0.8], ddof=1):.3f} | n/a |",
    ]
