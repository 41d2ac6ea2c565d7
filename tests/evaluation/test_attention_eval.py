"""Localisation of a classifier on a split (against tf-keras-vis Grad-CAM), its cache, and inference cost
(against hand-counted multiply-adds and TensorFlow's own profiler)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image
from tf_keras_vis.gradcam import Gradcam
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from ird_tf.data.view import InputView
from ird_tf.errors import DataError
from ird_tf.evaluation.attention_eval import cached_localisation, localisation_on_split, read_localisation
from ird_tf.evaluation.localisation import load_masks, localisation_scores
from ird_tf.models import build_classifier, logits_model


def tiny_split(tmp_path, n=10, size=32):
    """Noise images; masks with a lesion (grade 3 or 4) in one quadrant, NC rows all benign, one row
    without a mask file (must be left out)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(img)
        label = i % 4
        mask = np.zeros((size, size), np.uint8)
        if label:
            r, c = divmod(i % 4, 2)
            mask[r * size // 2:(r + 1) * size // 2, c * size // 2:(c + 1) * size // 2] = 2 + label
            mask[:2, :] = 255
        path = tmp_path / f"p{i}_mask.png"
        Image.fromarray(mask).save(path)
        rows.append({"path": str(img), "label": label, "mask": None if i == n - 1 else str(path)})
    return pd.DataFrame(rows)


def gradcam_oracle(model, images, labels):
    """Raw Grad-CAM maps on the feature grid from tf-keras-vis (not our attention code)."""
    cam = Gradcam(logits_model(model), model_modifier=ReplaceToLinear(), clone=True)
    return cam(CategoricalScore(list(labels)), images, penultimate_layer="features",
               seek_penultimate_conv_layer=False, normalize_cam=False, expand_cam=False)


@pytest.mark.parametrize("factor, mode", [(1, "upsampled"), (2, "native")])
def test_localisation_matches_tf_keras_vis(tmp_path, factor, mode):
    keras.utils.set_random_seed(1)
    table = tiny_split(tmp_path)
    size = 32 // factor if mode == "native" else 32
    model = build_classifier("vgg_tiny", 4, (size, size, 3))
    view = InputView("hr" if factor == 1 else "lr", 32, factor, mode)
    scores = localisation_on_split(model, table, view, weighting="gradcam", batch_size=4)

    kept = table[table["mask"].notna()]
    images = np.stack([np.asarray(Image.open(p), np.float32) / 255.0 for p in kept["path"]])
    if factor > 1:
        images = tf.nn.avg_pool2d(images, factor, factor, "VALID").numpy()
    maps = np.asarray(gradcam_oracle(model, images, kept["label"].to_numpy()))
    expected = localisation_scores(maps, load_masks(kept["mask"].tolist(), 32))
    assert scores["n"] == expected["n"] == int((kept["label"] > 0).sum())  # NC rows have no lesion
    for k in ("energy_inside", "pointing_game"):
        assert 0.0 <= scores[k] <= 1.0
        np.testing.assert_allclose(scores[k], expected[k], rtol=1e-4, atol=1e-6)


def test_localisation_needs_masks(tmp_path):
    table = tiny_split(tmp_path, n=3).assign(mask=None)
    with pytest.raises(DataError, match="mask"):
        localisation_on_split(build_classifier("vgg_tiny", 4, (32, 32, 3)), table, InputView("hr", 32))


def test_cached_localisation_computes_once_per_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"energy_inside": 0.4, "pointing_game": float("nan"), "n": 0, "n_zero_energy": 0}

    key = {"split": "test", "weighting": "gradcam"}
    first, cached = cached_localisation(tmp_path, compute, key=key)
    assert not cached and len(calls) == 1 and first["energy_inside"] == 0.4
    on_disk = json.loads((tmp_path / "localisation.json").read_text())
    assert on_disk["key"] == key and on_disk["scores"]["pointing_game"] is None  # strict JSON
    again, cached = cached_localisation(tmp_path, compute, key=key)
    assert cached and len(calls) == 1
    assert again["energy_inside"] == 0.4 and np.isnan(again["pointing_game"])
    assert read_localisation(tmp_path, {**key, "weighting": "positive"}) is None
    _, cached = cached_localisation(tmp_path, compute, key={**key, "weighting": "positive"})
    assert not cached and len(calls) == 2
