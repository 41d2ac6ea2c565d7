"""Augmentation of the high-resolution patch, applied once before the low-resolution view is derived.

Split in two so the tf.data hot path stays lean and reproducible:

* :func:`random_uniforms` draws one small vector of uniforms per image from a stateless seed
  (``(seed, element index)`` in the pipeline), so a seeded run gives the same images whatever the
  parallelism;
* :func:`augment_batch` turns those uniforms into parameters and transforms a whole batch at once:
  :func:`geometric` is one bilinear warp with reflected borders (flip, 90° rotation, free rotation,
  scale and translation fused, so pixels are interpolated once); :func:`photometric` is H&E stain
  jitter, then colour jitter as one 3×3 colour matrix per image.

Every function is plain TensorFlow, traceable by ``tf.function`` and XLA (the pipeline compiles
``geometric`` and ``photometric`` separately). :func:`augment_image` is the one-image form.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ird_tf.config import AugmentConfig

# Layout of the per-image uniform vector.
_FLIP, _ROT90, _ANGLE, _SCALE, _TX, _TY = range(6)
_BRIGHT, _CONTRAST, _SAT, _HUE = range(6, 10)
_ALPHA_H, _ALPHA_E, _BETA_H, _BETA_E = range(10, 14)
N_UNIFORMS = 14

_H = np.array([0.65, 0.70, 0.29])
_E = np.array([0.07, 0.99, 0.11])
_H, _E = _H / np.linalg.norm(_H), _E / np.linalg.norm(_E)
_R = np.cross(_H, _E)
#: Ruifrok & Johnston H&E optical-density vectors (rows: haematoxylin, eosin, residual = H × E).
STAIN_MATRIX = np.stack([_H, _E, _R / np.linalg.norm(_R)]).astype(np.float32)
_OD_EPS = 1.0 / 255.0

_LUMA = np.array([0.299, 0.587, 0.114])
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def random_uniforms(seed) -> tf.Tensor:
    """float32[N_UNIFORMS] in [0, 1) from a stateless seed (an int, or a pair such as (seed, index))."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int64)])
    return tf.random.stateless_uniform([N_UNIFORMS], seed=seed, dtype=tf.float32)


def augment_image(image: tf.Tensor, cfg: AugmentConfig, seed) -> tf.Tensor:
    """Augments one float32[H, W, 3] image in [0, 1] (graph-safe; same seed → same result)."""
    return augment_batch(image[None], random_uniforms(seed)[None], cfg)[0]


def augment_batch(images: tf.Tensor, uniforms: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """Augments float32[B, H, W, 3] in [0, 1] with per-image uniforms float32[B, N_UNIFORMS].

    Parts switched off in ``cfg`` are left out of the graph. The result is clipped to [0, 1].
    """
    if not cfg.enabled:
        return images
    return photometric(geometric(images, uniforms, cfg), uniforms, cfg)


def geometric(images: tf.Tensor, uniforms: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """Flip, quarter turn, free rotation, scale and translation as one warp (one interpolation)."""
    lo, hi = (float(s) for s in cfg.scale)
    if not (cfg.flip or cfg.rot90 or cfg.rotation_deg > 0 or (lo, hi) != (1.0, 1.0) or cfg.translate > 0):
        return images
    u = uniforms
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    zeros = tf.zeros_like(u[:, 0])
    transforms = affine_transforms(
        flip=u[:, _FLIP] < 0.5 if cfg.flip else zeros > 0,
        quarter_turns=tf.floor(u[:, _ROT90] * 4.0) if cfg.rot90 else zeros,
        angle=_sym(u, _ANGLE, math.radians(cfg.rotation_deg)),
        scale=lo + (hi - lo) * u[:, _SCALE],
        shift=tf.stack([_sym(u, _TX, cfg.translate) * width, _sym(u, _TY, cfg.translate) * height], axis=1),
        height=height,
        width=width,
    )
    return warp(images, transforms)


def photometric(images: tf.Tensor, uniforms: tf.Tensor, cfg: AugmentConfig) -> tf.Tensor:
    """H&E stain jitter, then colour jitter, then clipping to [0, 1] (identity when both are off)."""
    u = uniforms
    if cfg.stain_jitter == 0 and cfg.color_jitter == 0:
        return images
    if cfg.stain_jitter > 0:
        s = cfg.stain_jitter
        alpha = 1.0 + tf.stack([_sym(u, _ALPHA_H, s), _sym(u, _ALPHA_E, s)], axis=1)
        beta = tf.stack([_sym(u, _BETA_H, s), _sym(u, _BETA_E, s)], axis=1)
        images = stain_jitter(images, alpha, beta)
    if cfg.color_jitter > 0:
        j = cfg.color_jitter
        images = color_jitter(
            images,
            brightness=1.0 + _sym(u, _BRIGHT, j),
            contrast=1.0 + _sym(u, _CONTRAST, j),
            saturation=1.0 + _sym(u, _SAT, j),
            hue=_sym(u, _HUE, j / 2.0),
        )
    return tf.clip_by_value(images, 0.0, 1.0)


def _sym(u: tf.Tensor, i: int, amount: float) -> tf.Tensor:
    """Column i of the uniforms mapped to [-amount, amount]."""
    return (2.0 * u[:, i] - 1.0) * amount


def affine_transforms(flip, quarter_turns, angle, scale, shift, height, width) -> tf.Tensor:
    """Per-image output→input maps float32[B, 8] for ``ImageProjectiveTransformV3``.

    An input point p maps to the output at ``c + s·R(angle)·R90^k·F·(p - c) + shift`` (c: image centre
    in pixel-index coordinates), so flips and quarter turns alone are exact pixel permutations.
    ``flip`` bool[B] (left-right), ``quarter_turns`` float[B] in {0..3}, ``angle`` radians[B],
    ``scale`` [B] (> 1 zooms in), ``shift`` [B, 2] pixels (x, y).
    """
    k = tf.cast(quarter_turns, tf.float32) * (math.pi / 2.0)
    c90, s90 = tf.round(tf.cos(k)), tf.round(tf.sin(k))  # exact 0/±1
    phi_c = tf.cos(angle) * c90 - tf.sin(angle) * s90  # cos(angle + k·90°) without rounding error
    phi_s = tf.sin(angle) * c90 + tf.cos(angle) * s90
    fx = tf.where(flip, -1.0, 1.0)
    # Inverse (output → input): p_in = c + F·R(-phi)·(p_out - c - shift) / s.
    inv_s = 1.0 / tf.cast(scale, tf.float32)
    a00, a01 = fx * phi_c * inv_s, fx * phi_s * inv_s
    a10, a11 = -phi_s * inv_s, phi_c * inv_s
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    ox, oy = cx + shift[:, 0], cy + shift[:, 1]
    zeros = tf.zeros_like(a00)
    return tf.stack(
        [a00, a01, cx - a00 * ox - a01 * oy, a10, a11, cy - a10 * ox - a11 * oy, zeros, zeros], axis=1
    )


def warp(images: tf.Tensor, transforms: tf.Tensor) -> tf.Tensor:
    """Bilinear warp by output→input maps [B, 8] (``ImageProjectiveTransformV3`` layout, affine part),
    borders reflected (half-sample symmetric, no black corners that would mark augmented patches).

    Same values as ``ImageProjectiveTransformV3(..., fill_mode="REFLECT")``, written as gathers so XLA
    can fuse it: under ``jit_compile`` it runs several times faster than that kernel on CPU (measured by
    ``python tools/benchmark.py xla``, ``augmentation_warp``).
    """
    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    ys, xs = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32), indexing="ij")
    a = tf.cast(transforms, tf.float32)[:, :, None, None]
    x_in = a[:, 0] * xs + a[:, 1] * ys + a[:, 2]
    y_in = a[:, 3] * xs + a[:, 4] * ys + a[:, 5]
    x0, y0 = tf.floor(x_in), tf.floor(y_in)
    wx, wy = (x_in - x0)[..., None], (y_in - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x0r, x1r = _reflect(x0, w), _reflect(x0 + 1, w)
    y0r, y1r = _reflect(y0, h) * w, _reflect(y0 + 1, h) * w
    flat = tf.reshape(images, [-1, c])
    base = (tf.range(b) * h * w)[:, None, None]

    def at(row, col):
        return tf.cast(tf.gather(flat, base + row + col), tf.float32)

    top = at(y0r, x0r) + wx * (at(y0r, x1r) - at(y0r, x0r))
    bottom = at(y1r, x0r) + wx * (at(y1r, x1r) - at(y1r, x0r))
    return top + wy * (bottom - top)


def _reflect(i: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """Index into [0, n) mirrored about the edges: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ..."""
    i = tf.math.floormod(i, 2 * n)
    return tf.where(i >= n, 2 * n - 1 - i, i)


def stain_jitter(images: tf.Tensor, alpha: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
    """Tellez-style H&E jitter: stain concentrations c ← α·c + β for haematoxylin and eosin.

    Concentrations come from colour deconvolution of the optical density OD = -ln(I) with
    :data:`STAIN_MATRIX`. Written as I · exp(-ΔOD) with ΔOD = Σ ((α-1)·c + β)·stain = OD·K + d (one
    3×3 matrix and offset per image), which equals exp(-OD') but is exactly the identity for α = 1,
    β = 0 (black pixels included). ``alpha``, ``beta``: float32[B, 2] (H, E).
    """
    unmix = tf.constant(np.linalg.inv(STAIN_MATRIX)[:, :2], tf.float32)  # OD → (c_H, c_E)
    stains = tf.constant(STAIN_MATRIX[:2], tf.float32)
    k = tf.einsum("cs,bs,sd->bcd", unmix, tf.cast(alpha, tf.float32) - 1.0, stains)  # [B, 3, 3]
    d = tf.cast(beta, tf.float32) @ stains  # [B, 3]
    od = -tf.math.log(tf.maximum(images, _OD_EPS))
    return images * tf.exp(-(_per_image_matmul(od, k) + d[:, None, None, :]))


def color_jitter(images, brightness, contrast, saturation, hue) -> tf.Tensor:
    """Brightness (×b), contrast (around the image's mean luma), saturation (blend with luma) and hue
    (rotation in the YIQ chroma plane, ``hue`` in turns), fused into one colour matrix per image.

    All factors are float[B]; identity at (1, 1, 1, 0). No clipping in between (the caller clips).
    """
    b, c, s = (tf.cast(x, tf.float32) for x in (brightness, contrast, saturation))
    theta = 2.0 * math.pi * tf.cast(hue, tf.float32)
    luma = tf.constant(_LUMA, tf.float32)
    eye = tf.eye(3, batch_shape=tf.shape(b)[:1])
    sat = s[:, None, None] * eye + (1.0 - s)[:, None, None] * tf.ones([3, 1]) * luma[None, :]
    cos, sin, zero, one = tf.cos(theta), tf.sin(theta), tf.zeros_like(theta), tf.ones_like(theta)
    rot = tf.reshape(tf.stack([one, zero, zero, zero, cos, -sin, zero, sin, cos], axis=1), [-1, 3, 3])
    hue_m = tf.constant(np.linalg.inv(_YIQ), tf.float32)[None] @ rot @ tf.constant(_YIQ, tf.float32)[None]
    matrix = hue_m @ sat * (b * c)[:, None, None]  # [B, 3, 3], acting on column vectors
    mean_luma = tf.linalg.matvec(tf.reduce_mean(images, axis=[1, 2]), luma)
    offset = (1.0 - c) * b * mean_luma  # grey (1, 1, 1) is kept by the saturation and hue matrices
    return _per_image_matmul(images, tf.linalg.matrix_transpose(matrix)) + offset[:, None, None, None]


def _per_image_matmul(images: tf.Tensor, m: tf.Tensor) -> tf.Tensor:
    """images[B, H, W, 3] @ m[B, 3, 3] (row vectors), written elementwise so that XLA fuses it."""
    m = m[:, None, None]
    return images[..., 0:1] * m[..., 0, :] + images[..., 1:2] * m[..., 1, :] + images[..., 2:3] * m[..., 2, :]


__all__ = [
    "N_UNIFORMS",
    "STAIN_MATRIX",
    "random_uniforms",
    "augment_image",
    "augment_batch",
    "affine_transforms",
    "warp",
    "stain_jitter",
    "color_jitter",
]
