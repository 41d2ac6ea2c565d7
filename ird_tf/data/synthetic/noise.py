"""Random fields the tissue is painted with: white noise, smooth noise of a given correlation
length, and wavy oriented fibres. Elementwise, einsum and FFT only (no BLAS threads), so they give the
same bits whatever the number of workers."""

from __future__ import annotations

import functools

import numpy as np
from scipy import fft as sfft
from scipy import ndimage


def white_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance uniform white noise (random bytes: several times faster than normals)."""
    b = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)
    return (b.astype(np.float32) - 127.5) * np.float32(1 / 73.9)


def _bspline(n: int, step: float, shift: float) -> tuple[np.ndarray, np.ndarray]:
    """Cubic B-spline interpolation of a grid of spacing ``step`` px at n pixels: first of the four
    grid indices per pixel, and weights (4, n) normalised so that interpolated white noise keeps unit
    variance everywhere."""
    t = np.arange(n) / step + shift
    i = np.floor(t).astype(np.intp)
    f = (t - i).astype(np.float32)
    w = np.stack([(1 - f) ** 3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1, f**3])
    return i - 1, w / np.sqrt((w * w).sum(0))


def noise(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Smooth Gaussian-like noise, unit variance, correlation length ``scale`` px. Large scales: a coarse
    white grid interpolated by separable B-splines; small ones: box-blurred white noise. Elementwise
    and einsum only (no BLAS threads), so the same bits whatever the number of workers."""
    if scale < 1.5:
        return white_noise(rng, (n, n))
    if scale < 4.0:
        size = int(round(scale))
        return ndimage.uniform_filter(white_noise(rng, (n, n)), size, mode="wrap") * np.float32(size)
    m = int(n / scale) + 5
    g = rng.standard_normal((m, m), dtype=np.float32)
    ix, wx = _bspline(n, scale, rng.uniform(1, 2))
    iy, wy = _bspline(n, scale, rng.uniform(1, 2))
    cols = wx[0] * g[:, ix] + wx[1] * g[:, ix + 1] + wx[2] * g[:, ix + 2] + wx[3] * g[:, ix + 3]  # (m, n)
    out = cols[iy] * wy[0][:, None]
    for j in (1, 2, 3):
        out += cols[iy + j] * wy[j][:, None]
    return out


@functools.lru_cache(maxsize=8)
def _frequencies(n: int) -> tuple[np.ndarray, ...]:
    """cos and sin of twice the direction, squared modulus, and multiplicity in the full spectrum of
    the rfft2 frequencies of an n x n image."""
    ky = np.fft.fftfreq(n).astype(np.float32)[:, None]
    kx = np.fft.rfftfreq(n).astype(np.float32)[None, :]
    k2 = kx * kx + ky * ky
    direction = np.arctan2(ky, kx)
    count = np.full(kx.shape, 2.0, np.float32)
    count[:, 0] = 1
    if n % 2 == 0:
        count[:, -1] = 1
    return np.cos(2 * direction), np.sin(2 * direction), k2, count


def fibres(rng: np.random.Generator, n: int, angle: float, spread: float, width: float) -> np.ndarray:
    """Wavy fibres running along ``angle`` (radians from x towards y), ``width`` px thick, unit variance:
    white noise filtered to frequencies within about ``spread`` radians of the fibres' normal."""
    cos2, sin2, k2, count = _frequencies(n)
    kappa = np.float32(1 / (4 * spread**2))  # von Mises in 2 x direction ~ Gaussian of sd ``spread``
    turn = -np.cos(2 * angle) * cos2 - np.sin(2 * angle) * sin2  # cos(2 (direction - angle - 90°))
    filt = np.exp(kappa * (turn - 1) - np.float32(0.5 * (2 * np.pi * width) ** 2) * k2)
    filt[0, 0] = 0
    std = np.sqrt((count * filt * filt).sum()) / n  # Parseval: variance of the filtered white noise
    return (sfft.irfft2(sfft.rfft2(white_noise(rng, (n, n))) * (filt / std), s=(n, n))).astype(np.float32)
