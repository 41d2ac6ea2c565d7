"""Figures: overlay numbers by hand, PNG files decoded with PIL (size, colours), input errors."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ird_tf.errors import DataError
from ird_tf.evaluation.figures import (
    CORRECT_COLOUR,
    WRONG_COLOUR,
    attention_figure,
    bar_plot,
    curve_plot,
    overlay,
    prediction_colour,
)

NAMES = ("NC", "G3", "G4", "G5")
JET_LOW, JET_HIGH = np.array([0.0, 0.0, 0.5]), np.array([0.5, 0.0, 0.0])  # jet(0), jet(1)


def png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB")).astype(int)


def test_overlay_by_hand():
    image = np.full((16, 16, 3), 200, np.uint8)
    m = np.zeros((16, 16))
    m[3, 5] = 2.0
    m[10, 1] = -1.0  # the minimum
    out = overlay(image, m, alpha=0.25)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out[3, 5], 0.75 * 200 + 0.25 * 255 * JET_HIGH, atol=1)
    np.testing.assert_allclose(out[10, 1], 0.75 * 200 + 0.25 * 255 * JET_LOW, atol=1)
    # the same image as floats in [0, 1], and a small map upsampled to the image
    np.testing.assert_array_equal(overlay(image / 255.0, m, alpha=0.25), out)
    small = overlay(image, np.arange(16.0).reshape(4, 4), alpha=0.5)
    assert small.shape == (16, 16, 3)
    np.testing.assert_allclose(small[0, 0], 0.5 * 200 + 0.5 * 255 * JET_LOW, atol=1)
    np.testing.assert_allclose(small[-1, -1], 0.5 * 200 + 0.5 * 255 * JET_HIGH, atol=1)
    np.testing.assert_array_equal(overlay(image, m, alpha=0.0), image)


def test_overlay_of_constant_map_is_finite_lowest_colour():
    image = np.random.default_rng(0).integers(0, 256, (12, 20, 3)).astype(np.uint8)
    out = overlay(image, np.full((3, 5), 7.0), alpha=0.5)
    assert out.shape == (12, 20, 3) and out.dtype == np.uint8
    np.testing.assert_allclose(out, 0.5 * image + 0.5 * 255 * JET_LOW, atol=1)


def test_overlay_rejects_bad_input():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, np.zeros((2, 2)), alpha=1.5)
    with pytest.raises(DataError, match="NaN"):
        overlay(image, np.full((2, 2), np.nan))
    with pytest.raises(DataError, match=r"\[H, W, 3\]"):
        overlay(np.zeros((8, 8, 4)), np.zeros((2, 2)))


def test_prediction_colour():
    assert prediction_colour([0.1, 0.7, 0.1, 0.1], 1) == CORRECT_COLOUR
    assert prediction_colour([0.1, 0.7, 0.1, 0.1], 2) == WRONG_COLOUR
    assert CORRECT_COLOUR != WRONG_COLOUR


def make_rows(n: int, correct: bool) -> list[dict]:
    """Grey images and a grey colour map, so the only coloured pixels are the probability texts."""
    rng = np.random.default_rng(n)
    rows = []
    for i in range(n):
        label = i % 4
        hit = np.eye(4)[label] * 0.7 + 0.075
        probs = hit if correct else np.roll(hit, 1)
        grey = np.repeat(rng.integers(80, 220, (32, 32, 1)), 3, axis=-1).astype(np.uint8)
        low = np.kron(grey[::4, ::4], np.ones((4, 4, 1))).astype(np.uint8)
        rows.append({
            "label": label,
            "images": {"10x": grey, "2.5x": low},
            "maps": {name: rng.random((4, 4)) for name in ("no KD", "FM+AT+", "teacher")},
            "probs": {name: probs for name in ("no KD", "FM+AT+", "teacher")},
            "title": f"patch {i}",
        })
    return rows


COLUMNS = ["10x", "2.5x", "no KD", "FM+AT+", "teacher"]
INPUTS = {"no KD": "2.5x", "FM+AT+": "2.5x", "teacher": "10x"}


def coloured(pixels: np.ndarray, channel: int) -> int:
    """Pixels where one channel clearly dominates the other two (text in green or red)."""
    others = [c for c in range(3) if c != channel]
    return int(np.sum((pixels[..., channel] > pixels[..., others[0]] + 60)
                      & (pixels[..., channel] > pixels[..., others[1]] + 60)))


def test_attention_figure_size_and_colours(tmp_path: Path):
    two = attention_figure(tmp_path / "sub" / "two.png", make_rows(2, True), COLUMNS, NAMES,
                           inputs=INPUTS, cmap="gray")
    three = attention_figure(tmp_path / "three.png", make_rows(3, False), COLUMNS, NAMES,
                             inputs=INPUTS, cmap="gray")
    a, b = png(two), png(three)
    # panel 1.6 in per column at 100 dpi; (1.6 + 0.3) in per row plus 0.3 in for the titles
    assert a.shape == (410, 800, 3) and b.shape == (600, 800, 3)
    assert coloured(a, 1) > 50 and coloured(a, 0) == 0  # right: green text only
    assert coloured(b, 0) > 50 and coloured(b, 1) == 0  # wrong: red text only


def test_attention_figure_errors(tmp_path: Path):
    rows = make_rows(1, True)
    with pytest.raises(DataError, match="'student'"):
        attention_figure(tmp_path / "x.png", rows, ["10x", "student"], NAMES)
    with pytest.raises(DataError, match=r"inputs\['teacher'\]='40x'"):
        attention_figure(tmp_path / "x.png", rows, ["teacher"], NAMES, inputs={"teacher": "40x"})
    rows[0]["probs"]["teacher"] = [0.5, 0.5]
    with pytest.raises(DataError, match=r"probs\['teacher'\].*\(4,\)"):
        attention_figure(tmp_path / "x.png", rows, ["teacher"], NAMES)
    rows[0]["label"] = 4
    with pytest.raises(DataError, match="label=4"):
        attention_figure(tmp_path / "x.png", rows, ["10x"], NAMES)
    assert not (tmp_path / "x.png").exists()


def test_curve_plot(tmp_path: Path):
    series = {"FM+AT+": ([0.8, 0.75, 0.6], [0.02, 0.03, np.nan]),
              "no KD": ([0.7, 0.6, 0.5], [0.01, 0.0, 0.02])}
    out = curve_plot(tmp_path / "curve.png", [2.5, 1.25, 0.625], series, "magnification", "balanced accuracy",
                     "accuracy vs magnification", logx=True)
    assert out == tmp_path / "curve.png"
    assert png(out).shape == (350, 500, 3)
    labels = curve_plot(tmp_path / "labels.png", ["x1", "x2", "x4"], series, "unlabeled set", "kappa",
                        size_inches=(4.0, 3.0), dpi=50)
    assert png(labels).shape == (150, 200, 3)
    with pytest.raises(ValueError, match="'no KD' has 2 means"):
        curve_plot(tmp_path / "bad.png", [1, 2, 3], {"no KD": ([0.1, 0.2], [0.0, 0.0])}, "x", "y")
    with pytest.raises(ValueError, match="logx"):
        curve_plot(tmp_path / "bad.png", [0, 1, 2], series, "x", "y", logx=True)


def test_bar_plot_heights_follow_means(tmp_path: Path):
    table = pd.DataFrame({"norm": ["minmax", "softmax"], "distance": ["l2", "l2"], "mean": [0.8, 0.4]})
    out = png(bar_plot(tmp_path / "bars.png", table, group="norm", hue="distance", std=None))
    assert out.shape == (350, 600, 3)
    c0 = np.all(out == (31, 119, 180), axis=-1)  # matplotlib's first colour, "#1f77b4"
    heights = c0.sum(axis=0)  # bar height in px, per image column
    left, right = heights[:300].max(), heights[300:].max()
    assert right > 50 and left / right == pytest.approx(2.0, rel=0.05)


def test_bar_plot_groups_gaps_and_errors(tmp_path: Path):
    table = pd.DataFrame({
        "norm": ["minmax", "minmax", "softmax", "l2", "l2", "none"],
        "distance": ["l2", "kl", "l2", "l2", "bce", "kl"],
        "mean": [0.8, 0.7, 0.75, 0.6, 0.65, 0.5],
        "std": [0.02, 0.01, np.nan, 0.03, 0.02, 0.05],
    })
    out = bar_plot(tmp_path / "ablation.png", table, group="norm", hue="distance", ylabel="kappa",
                   title="AT+ ablation at 2.5x")
    assert png(out).shape == (350, 600, 3)
    with pytest.raises(ValueError, match=r"\['std'\]"):
        bar_plot(tmp_path / "bad.png", table.drop(columns="std"), group="norm", hue="distance")
    with pytest.raises(ValueError, match="aggregate"):
        bar_plot(tmp_path / "bad.png", pd.concat([table, table]), group="norm", hue="distance")
