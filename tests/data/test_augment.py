"""Augmentation: geometry against analytic positions, stain and colour jitter against NumPy formulas."""

import numpy as np
import pytest
import tensorflow as tf

from ird_tf.config import AugmentConfig
from ird_tf.data.augment import (
    STAIN_MATRIX,
    affine_transforms,
    augment_batch,
    augment_image,
    color_jitter,
    random_uniforms,
    stain_jitter,
    warp,
)

OFF = dict(
    flip=False,
    rot90=False,
    rotation_deg=0.0,
    scale=(1.0, 1.0),
    translate=0.0,
    color_jitter=0.0,
    stain_jitter=0.0,
)
LUMA = np.array([0.299, 0.587, 0.114])
YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _image(size=24, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 1.0, (size, size, 3)).astype(np.float32)


def test_default_augmentation_keeps_range_changes_image_and_is_seeded():
    img = _image(32)
    img[:4] = 1.0  # saturated pixels must stay in range through colour and stain jitter
    img[-4:] = 0.0
    cfg = AugmentConfig()
    out = [augment_image(tf.constant(img), cfg, seed=(7, i)).numpy() for i in range(4)]
    for o in out:
        assert o.shape == img.shape and o.dtype == np.float32
        assert o.min() >= 0.0 and o.max() <= 1.0
        assert np.abs(o - img).mean() > 0.01
    np.testing.assert_array_equal(out[0], augment_image(tf.constant(img), cfg, seed=(7, 0)).numpy())
    assert np.abs(out[0] - out[1]).mean() > 0.01
    graph = tf.function(lambda x: augment_image(x, cfg, seed=(7, 0)))
    np.testing.assert_allclose(graph(tf.constant(img)).numpy(), out[0], atol=1e-6)


def test_disabled_or_all_off_is_identity():
    img = _image()
    for cfg in (AugmentConfig(enabled=False), AugmentConfig(**OFF)):
        np.testing.assert_array_equal(augment_image(tf.constant(img), cfg, seed=3).numpy(), img)


def test_flips_and_quarter_turns_are_exact_pixel_permutations():
    img = _image(16)
    variants = [np.rot90(v, k, axes=(0, 1)) for v in (img, img[:, ::-1]) for k in range(4)]
    cfg = AugmentConfig(**{**OFF, "flip": True, "rot90": True})
    seen = set()
    for i in range(24):
        out = augment_image(tf.constant(img), cfg, seed=(1, i)).numpy()
        match = [j for j, v in enumerate(variants) if np.allclose(out, v, atol=1e-6)]
        assert len(match) == 1, f"seed {i}: not one of the 8 dihedral variants"
        seen.add(match[0])
    assert len(seen) >= 6


@pytest.mark.parametrize(
    "flip,turns,angle_deg,scale,shift",
    [
        (False, 0, 0.0, 1.0, (3.0, -2.0)),
        (False, 0, 25.0, 1.15, (0.0, 0.0)),
        (True, 1, -10.0, 0.95, (1.5, 2.0)),
        (True, 3, 40.0, 1.2, (-2.0, 1.0)),
    ],
)
def test_affine_moves_a_blob_to_the_documented_place(flip, turns, angle_deg, scale, shift):
    """Forward map: p_out = c + s·R(angle + turns·90°)·F·(p_in - c) + shift, c = image centre."""
    n, src = 41, np.array([27.0, 13.0])  # (x, y)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    blob = np.exp(-((xx - src[0]) ** 2 + (yy - src[1]) ** 2) / (2 * 1.5**2))
    img = np.repeat(blob[None, :, :, None], 3, axis=3).astype(np.float32)
    t = affine_transforms(
        flip=tf.constant([flip]),
        quarter_turns=tf.constant([float(turns)]),
        angle=tf.constant([np.radians(angle_deg)], tf.float32),
        scale=tf.constant([scale], tf.float32),
        shift=tf.constant([shift], tf.float32),
        height=float(n),
        width=float(n),
    )
    out = warp(tf.constant(img), t).numpy()[0, :, :, 0]
    c = (n - 1) / 2.0
    phi = np.radians(angle_deg) + turns * np.pi / 2
    rot = np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    expected = c + scale * rot @ (np.diag([-1.0 if flip else 1.0, 1.0]) @ (src - c)) + np.array(shift)
    win = (np.abs(xx - expected[0]) <= 6) & (np.abs(yy - expected[1]) <= 6)
    mass = (out * win).sum()
    assert mass > 0.9 * blob.sum() * scale**2
    centroid = np.array([(out * win * xx).sum(), (out * win * yy).sum()]) / mass
    np.testing.assert_allclose(centroid, expected, atol=0.25)


def test_stain_jitter_matches_colour_deconvolution():
    img = _image(12)[None]
    alpha, beta = np.array([[1.3, 0.8]], np.float32), np.array([[0.1, -0.05]], np.float32)
    out = stain_jitter(tf.constant(img), tf.constant(alpha), tf.constant(beta)).numpy()
    m = STAIN_MATRIX.astype(np.float64)
    conc = -np.log(img.astype(np.float64)) @ np.linalg.inv(m)
    conc[..., :2] = conc[..., :2] * alpha[0] + beta[0]
    np.testing.assert_allclose(out, np.exp(-(conc @ m)), rtol=1e-4)
    # Haematoxylin and eosin vectors of Ruifrok & Johnston, unit length.
    np.testing.assert_allclose(
        STAIN_MATRIX[0], np.array([0.65, 0.70, 0.29]) / np.linalg.norm([0.65, 0.70, 0.29]), atol=1e-6
    )


def test_stain_jitter_with_zero_strength_is_identity():
    img = _image(12)
    img[0, 0] = 0.0  # black pixels (infinite optical density) too
    img[1, 1] = 1.0
    out = stain_jitter(tf.constant(img[None]), tf.ones([1, 2]), tf.zeros([1, 2])).numpy()[0]
    np.testing.assert_array_equal(out, img)


def test_stain_only_augmentation_changes_od_within_the_h_and_e_plane():
    img = _image(16, seed=3) * 0.9
    cfg = AugmentConfig(**{**OFF, "stain_jitter": 0.2})
    out = augment_image(tf.constant(img), cfg, seed=5).numpy()
    ok = (out > 0) & (out < 1)
    ok = ok.all(axis=-1)
    delta_od = -np.log(out[ok] / img[ok])
    assert np.abs(delta_od).max() > 0.01
    normal = np.cross(STAIN_MATRIX[0], STAIN_MATRIX[1])
    np.testing.assert_allclose(delta_od @ normal, 0.0, atol=1e-4)


def test_colour_jitter_matches_numpy_formulas():
    img = _image(10, seed=4)[None].astype(np.float64)
    b, c, s = 1.08, 0.9, 1.1
    out = color_jitter(tf.constant(img, tf.float32), [b], [c], [s], [0.0]).numpy()
    x = img * b
    x = c * x + (1 - c) * (x @ LUMA).mean()
    x = s * x + (1 - s) * (x @ LUMA)[..., None]
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_hue_rotation_keeps_luma_and_turns_chroma():
    img = _image(10, seed=5)[None]
    half = color_jitter(tf.constant(img), [1.0], [1.0], [1.0], [0.5]).numpy()
    yiq_in, yiq_out = img @ YIQ.T, half @ YIQ.T
    np.testing.assert_allclose(yiq_out[..., 0], yiq_in[..., 0], atol=1e-5)
    np.testing.assert_allclose(yiq_out[..., 1:], -yiq_in[..., 1:], atol=1e-5)
    full = color_jitter(tf.constant(img), [1.0], [1.0], [1.0], [1.0]).numpy()
    np.testing.assert_allclose(full, img, atol=1e-5)


def test_batch_and_single_image_agree():
    imgs = np.stack([_image(16, seed=i) for i in range(3)])
    cfg = AugmentConfig()
    u = tf.stack([random_uniforms((9, i)) for i in range(3)])
    batch = augment_batch(tf.constant(imgs), u, cfg).numpy()
    for i in range(3):
        one = augment_image(tf.constant(imgs[i]), cfg, seed=(9, i)).numpy()
        np.testing.assert_allclose(batch[i], one, atol=1e-6)


def test_warp_matches_tensorflow_projective_transform_with_reflect():
    imgs = np.stack([_image(20, seed=i) for i in range(3)])
    t = affine_transforms(
        flip=tf.constant([False, True, True]),
        quarter_turns=tf.constant([0.0, 1.0, 2.0]),
        angle=tf.constant([0.3, -0.2, 0.7]),
        scale=tf.constant([0.9, 1.1, 1.0]),
        shift=tf.constant([[4.0, -3.0], [0.5, 0.25], [-6.0, 2.0]]),
        height=20.0,
        width=20.0,
    )
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=imgs,
        transforms=t,
        output_shape=[20, 20],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )
    np.testing.assert_allclose(warp(tf.constant(imgs), t).numpy(), expected.numpy(), atol=1e-5)
    compiled = tf.function(warp, jit_compile=True)
    np.testing.assert_allclose(compiled(tf.constant(imgs), t).numpy(), expected.numpy(), atol=1e-5)
