"""Localisation scores against hand-worked maps and masks; upsampling against tf.image.resize."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ird_tf.errors import DataError
from ird_tf.evaluation import localisation
from ird_tf.evaluation.localisation import (
    energy_inside,
    load_masks,
    localisation_scores,
    pointing_game,
    upsample_map,
)


def square_mask(size: int, r0: int, r1: int, c0: int, c1: int, value: int = 4) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[r0:r1, c0:c1] = value
    return mask


def test_upsample_by_hand_half_pixel_centres():
    # output pixel i samples input coordinate (i + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]
    m = np.array([[0.0, 1.0], [2.0, 3.0]])
    along = np.array([0.0, 0.25, 0.75, 1.0])
    expected = along[None, :] * 1.0 + along[:, None] * 2.0
    np.testing.assert_allclose(upsample_map(m, 4), expected, atol=1e-6)
    assert upsample_map(m, (4, 4)).dtype == np.float32


@pytest.mark.parametrize("src, dst", [((8, 8), (128, 128)), ((8, 8), (100, 100)), ((3, 5), (17, 40))])
def test_upsample_matches_tf_bilinear(src, dst):
    m = np.random.default_rng(0).normal(size=src).astype(np.float32)
    expected = tf.image.resize(m[None, ..., None], dst, method="bilinear").numpy()[0, ..., 0]
    np.testing.assert_allclose(upsample_map(m, dst), expected, atol=1e-5)


def test_energy_by_hand_and_255_is_not_lesion():
    m = np.array([[1.0, 2.0, 0.0],
                  [0.0, 4.0, -3.0],
                  [1.0, 0.0, 2.0]])
    mask = np.array([[0, 3, 0],
                     [0, 4, 0],
                     [5, 0, 255]], np.uint8)
    # inside: 2 + 4 + 1 = 7; positive energy: 1 + 2 + 4 + 1 + 2 = 10 (the -3 counts as 0, 255 is outside)
    assert energy_inside(m, mask) == pytest.approx(0.7)


def test_energy_all_inside_and_all_outside_after_upsampling():
    # one hot cell (1, 1) of a 4x4 map, upsampled x8: its bilinear support is pixels 4..19 on each axis
    m = np.zeros((4, 4))
    m[1, 1] = 1.0
    inside = square_mask(32, 4, 20, 4, 20)
    assert energy_inside(m, inside) == pytest.approx(1.0)
    outside = np.where(inside > 0, 0, 3).astype(np.uint8)
    assert energy_inside(m, outside) == pytest.approx(0.0)
    # one pixel smaller and a little energy falls outside
    assert energy_inside(m, square_mask(32, 5, 20, 4, 20)) < 1.0


def test_energy_of_uniform_map_is_lesion_area_fraction():
    rng = np.random.default_rng(1)
    mask = np.where(rng.random((64, 64)) < 0.3, 5, 0).astype(np.uint8)
    mask[:8] = 255
    expected = np.isin(mask, (3, 4, 5)).mean()
    assert energy_inside(np.full((8, 8), 0.3), mask) == pytest.approx(expected)


def test_energy_nan_without_lesion_or_without_energy():
    m = np.random.default_rng(2).random((4, 4))
    assert math.isnan(energy_inside(m, np.zeros((16, 16), np.uint8)))
    assert math.isnan(energy_inside(m, np.full((16, 16), 255, np.uint8)))
    lesion = square_mask(16, 0, 8, 0, 8)
    assert math.isnan(energy_inside(np.zeros((4, 4)), lesion))
    assert math.isnan(energy_inside(-np.ones((4, 4)), lesion))


def test_pointing_game_hit_miss_and_tolerance():
    mask = square_mask(20, 0, 5, 0, 5, value=3)  # lesion rows/cols 0..4
    m = np.zeros((20, 20))
    m[2, 3] = 1.0
    assert pointing_game(m, mask) == 1.0
    m = np.zeros((20, 20))
    m[4, 10] = 1.0  # nearest lesion pixel (4, 4) is 6 px away
    assert pointing_game(m, mask) == 0.0
    assert pointing_game(m, mask, tolerance_px=5.9) == 0.0
    assert pointing_game(m, mask, tolerance_px=6) == 1.0
    m = np.zeros((20, 20))
    m[9, 9] = 1.0  # diagonal: sqrt(5^2 + 5^2) = 7.07 px
    assert pointing_game(m, mask, tolerance_px=7.0) == 0.0
    assert pointing_game(m, mask, tolerance_px=7.1) == 1.0


def test_pointing_game_upsampled_255_flat_and_lesion_free():
    m = np.zeros((8, 8))
    m[6, 6] = 1.0  # centre of cell (6, 6) at 64 px: pixels 51-52
    assert pointing_game(m, square_mask(64, 48, 56, 48, 56)) == 1.0
    assert pointing_game(m, square_mask(64, 0, 40, 0, 40)) == 0.0
    assert pointing_game(m, square_mask(64, 48, 56, 48, 56, value=255) | square_mask(64, 0, 8, 0, 8)) == 0.0
    flat = np.full((8, 8), 0.5)  # points nowhere, even though its first maximum (0, 0) is on the lesion
    assert pointing_game(flat, square_mask(64, 0, 64, 0, 32)) == 0.0
    assert math.isnan(pointing_game(m, np.zeros((64, 64), np.uint8)))
    with pytest.raises(ValueError, match="tolerance_px"):
        pointing_game(m, square_mask(64, 0, 8, 0, 8), tolerance_px=-1)


def test_localisation_scores_skip_nan():
    lesion = square_mask(32, 4, 20, 4, 20)
    hot = np.zeros((4, 4))
    hot[1, 1] = 1.0
    cold = np.zeros((4, 4))
    cold[3, 3] = 1.0
    maps = np.stack([hot, cold, hot, np.zeros((4, 4))])
    masks = np.stack([lesion, lesion, np.zeros((32, 32), np.uint8), lesion])
    # energy: 1.0, 0.0, NaN (no lesion), NaN (no energy); pointing: 1, 0, NaN, 0 (flat map)
    scores = localisation_scores(maps, masks)
    assert scores["energy_inside"] == pytest.approx(0.5)
    assert scores["pointing_game"] == pytest.approx(1 / 3)
    assert scores["n"] == 3
    assert scores["n_zero_energy"] == 1
    empty = localisation_scores(maps[2:3], masks[2:3])
    assert math.isnan(empty["energy_inside"]) and math.isnan(empty["pointing_game"]) and empty["n"] == 0


def test_single_cell_maps_are_undefined_not_a_miss():
    # a 1x1 map upsamples to a constant: it cannot point, and its "energy share" would only be the
    # lesion's area fraction, so both scores are NaN (shown as n/a) while n still counts the lesions
    masks = np.stack([square_mask(16, 0, 8, 0, 8), np.zeros((16, 16), np.uint8),
                      square_mask(16, 8, 16, 8, 16)])
    scores = localisation_scores(np.ones((3, 1, 1)), masks)
    assert math.isnan(scores["energy_inside"]) and math.isnan(scores["pointing_game"])
    assert scores["n"] == 2
    # a 2x1 grid still localises
    two = localisation_scores(np.array([[[1.0], [0.0]]]), masks[:1])
    assert two["pointing_game"] == 1.0


def test_localisation_scores_shape_errors():
    with pytest.raises(DataError, match=r"\[N, h, w\]"):
        localisation_scores(np.zeros((2, 4, 4, 1)), np.zeros((2, 8, 8)))
    with pytest.raises(DataError, match="same N"):
        localisation_scores(np.zeros((2, 4, 4)), np.zeros((3, 8, 8)))
    with pytest.raises(DataError, match="NaN"):
        energy_inside(np.full((4, 4), np.nan), square_mask(8, 0, 4, 0, 4))


def test_load_masks_nearest_and_checks(tmp_path: Path):
    block = np.array([[0, 3], [255, 5]], np.uint8)
    big = np.kron(block, np.ones((32, 32), np.uint8))  # 64x64, constant 32-px quarters
    small = np.kron(block, np.ones((8, 8), np.uint8))  # 16x16
    Image.fromarray(big).save(tmp_path / "a.png")
    Image.fromarray(small).save(tmp_path / "b.png")
    Image.fromarray(np.repeat(small[..., None], 3, axis=-1)).save(tmp_path / "rgb.png")
    out = load_masks([tmp_path / "a.png", str(tmp_path / "b.png"), tmp_path / "rgb.png"], 32)
    assert out.shape == (3, 32, 32) and out.dtype == np.uint8
    expected = np.kron(block, np.ones((16, 16), np.uint8))
    for i in range(3):
        np.testing.assert_array_equal(out[i], expected)
    assert load_masks([tmp_path / "a.png"], (16, 8)).shape == (1, 16, 8)

    bad = small.copy()
    bad[0, 0] = 128
    Image.fromarray(bad).save(tmp_path / "bad.png")
    with pytest.raises(DataError, match=r"bad\.png.*\[128\]"):
        load_masks([tmp_path / "bad.png"], 16)
    assert load_masks([tmp_path / "bad.png"], 16, check_values=False)[0, 0, 0] == 128
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 0] = 3
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match=r"colour\.png"):
        load_masks([tmp_path / "colour.png"], 16)
    with pytest.raises(DataError, match=r"missing\.png"):
        load_masks([tmp_path / "missing.png"], 16)
    with pytest.raises(DataError, match="row 1 has no mask"):
        load_masks([tmp_path / "a.png", float("nan")], 16)


def test_module_imports_without_tensorflow():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('loc', {localisation.__file__!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "assert mod.energy_inside([[1.0]], [[3]]) == 1.0\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
