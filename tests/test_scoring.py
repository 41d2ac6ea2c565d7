"""The one definition of the classification scores: its rules, and NaN-safe model selection."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from ird_tf.scoring import classification_scores, improves, json_safe, mean_cross_entropy


def test_scores_follow_sklearn_and_the_documented_rules():
    y = np.array([0, 1, 1, 2, 3, 3, 0, 2])
    p = np.array([0, 1, 2, 2, 3, 1, 0, 2])
    s = classification_scores(y, p, 4)
    assert list(s) == ["balanced_accuracy", "kappa", "macro_f1", "accuracy"]
    assert s["kappa"] == pytest.approx(skm.cohen_kappa_score(y, p, weights="quadratic"))
    assert s["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert s["accuracy"] == pytest.approx(0.75)
    # probabilities or logits are arg-maxed
    assert classification_scores(y, np.eye(4)[p] * 2.0, 4) == s


def test_undefined_kappa_is_nan_never_zero():
    assert math.isnan(classification_scores([2, 2, 2], [2, 2, 2], 4)["kappa"])


def test_macro_f1_averages_the_classes_present_in_labels_or_predictions():
    # classes 0 and 1 only, of 4: both perfect -> 1.0 (not 0.5 from two absent classes counted as 0)
    assert classification_scores([0, 1, 0, 1], [0, 1, 0, 1], 4)["macro_f1"] == 1.0
    # a class only predicted counts (F1 0): classes {0, 1, 2} present
    f1 = classification_scores([0, 1, 0, 1], [0, 1, 0, 2], 4)["macro_f1"]
    assert f1 == pytest.approx(skm.f1_score([0, 1, 0, 1], [0, 1, 0, 2], average="macro", zero_division=0))
    assert f1 == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"y_pred holds classes outside 0\.\.3"):
        classification_scores([0, 1], [0, 4], 4)
    with pytest.raises(ValueError, match="equal non-zero lengths"):
        classification_scores([], [], 4)


def test_mean_cross_entropy():
    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    want = -np.mean([np.log(np.exp(2) / (np.exp(2) + 1)), np.log(np.exp(1) / (np.exp(1) + 1))])
    assert mean_cross_entropy([0, 1], logits) == pytest.approx(want)


def test_model_selection_never_prefers_nan_over_a_number():
    nan = math.nan
    assert improves(nan, None)  # nothing chosen yet: even an undefined value is kept
    assert improves(0.1, nan) and not improves(nan, 0.1) and not improves(nan, nan)
    assert improves(0.3, 0.2) and not improves(0.2, 0.2) and not improves(0.1, 0.2)
    assert improves(0.1, 0.2, "min") and not improves(0.3, 0.2, "min") and improves(0.3, nan, "min")
    with pytest.raises(ValueError, match="mode="):
        improves(0.1, 0.2, "best")


def test_json_safe():
    assert json_safe({"a": math.nan, "b": [np.float32(1.5), math.inf], "c": "x"}) == {
        "a": None, "b": [1.5, None], "c": "x"}
