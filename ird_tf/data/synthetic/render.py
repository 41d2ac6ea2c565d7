"""One patch from a random generator: a graded region, benign glands, the Gleason pattern and
stroma drawn into a ``Scene``, composed as optical densities and turned into RGB, with its SICAPv2
mask. Also ``block_mean`` (what a lower magnification sees), the settings check, the classes and
``GENERATOR_REVISION``, which versions this drawing."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ird_tf.config import ConfigError, SyntheticConfig
from ird_tf.data.synthetic.gleason import benign, g3, g4, g5
from ird_tf.data.synthetic.noise import fibres, noise, white_noise
from ird_tf.data.synthetic.scene import Nuclei, Scene, at, epithelial_nuclei, grid
from ird_tf.data.synthetic.stain import SlideStyle, beer_lambert, random_style

CLASSES: tuple[str, ...] = ("NC", "G3", "G4", "G5")
MASK_VALUES: tuple[int, ...] = (0, 3, 4, 5)
GENERATOR_REVISION = 1  # bump whenever drawing changes: it is part of the cache key
_SEVERITY = (0.0, 1 / 3, 2 / 3, 1.0)  # latent severity of NC, G3, G4, G5


def _region(rng: np.random.Generator, n: int, frac: float) -> np.ndarray:
    """A random blob (noisy outline, random centre) covering exactly round(frac * n^2) pixels of an
    n x n grid."""
    cy, cx = rng.uniform(0.15, 0.85, 2) * n
    yy, xx = np.arange(n, dtype=np.float32)[:, None] - cy, np.arange(n, dtype=np.float32)[None, :] - cx
    field = (noise(rng, n, n / 4) - 3.0 * np.sqrt(yy * yy + xx * xx) / n).ravel()
    k = int(round(frac * n * n))
    thr = np.partition(field, field.size - k)[field.size - k]
    return (field >= thr).astype(np.float32).reshape(n, n)


def _distance(mask: np.ndarray, q: int) -> np.ndarray:
    """Distance (px) to the nearest pixel outside ``mask``, on a grid of q x q cells (fast)."""
    return ndimage.distance_transform_edt(mask[q // 2 :: q, q // 2 :: q]).astype(np.float32) * q


def check_config(cfg: SyntheticConfig) -> None:
    cfg.validate()
    if cfg.magnification <= 0:
        raise ConfigError(
            f"synthetic.magnification={cfg.magnification!r}: expected a number > 0 (10 = 1 µm/px)")
    if cfg.patch_size < 32:
        raise ConfigError(f"synthetic.patch_size={cfg.patch_size!r}: expected at least 32 px")
    if cfg.folds < 2:
        raise ConfigError(f"synthetic.folds={cfg.folds!r}: expected at least 2")


def _stroma(sc: Scene, epi: np.ndarray, region: np.ndarray | None, d: float) -> tuple[np.ndarray, ...]:
    """H and E optical density of the stroma (eosinophilic wavy fibres with thin clefts); adds its
    spindle nuclei along the fibres, scattered lymphocytes and, at a rate growing with difficulty, a
    patch of chronic inflammation (dense small dark nuclei: solid tumour at low power, not at 10x)."""
    rng, px, n = sc.rng, sc.px, sc.n
    angle = rng.uniform(0, np.pi)
    fib = fibres(rng, n, angle, rng.uniform(0.15, 0.35), px(1.0))
    od_e = np.clip(0.85 + 0.22 * fib, 0.15, 1.5)
    od_e *= np.clip(fib + 2.6, 0, 1)  # retraction clefts along the fibres
    od_e *= rng.uniform(0.32, 0.5) * (1 + 0.1 * noise(rng, n, px(14)))
    od_h = rng.uniform(0.05, 0.1) + 0.015 * fib
    y, x = grid(rng, n, n, px(rng.uniform(16, 24)), 0.5)
    keep = at(epi, y, x) < 0.05
    spindle = Nuclei(12.0, 0.22, 0.15, 1.1, 0.0, 0.2, 0.0, 0.0)
    sc.add_nuclei("s", y[keep], x[keep], spindle, angle + rng.normal(0, 0.2, int(keep.sum())))
    lymphocyte = Nuclei(5.8, 0.9, 0.08, 1.5, 0.0, 0.15, 0.0, 0.0)
    m = int(rng.poisson(0.4 * (n * sc.mpp / 100) ** 2 * (1 + 3 * rng.random())))
    y, x = rng.uniform(0, n, (2, m))
    keep = at(epi, y, x) < 0.05
    sc.add_nuclei("s", y[keep], x[keep], lymphocyte)
    if rng.random() < 0.15 + 0.5 * d:
        blob = _region(rng, 32, rng.uniform(0.08, 0.3))  # smooth: a coarse grid is enough
        y, x = grid(rng, n, n, px(rng.uniform(6.5, 8.5)), 0.45)
        keep = (at(blob, y * 32 / n, x * 32 / n) > 0.5) & (at(epi, y, x) < 0.05)
        if region is not None:
            keep &= at(region, y, x) < 0.5
        sc.add_nuclei("s", y[keep], x[keep], lymphocyte)
    return od_h.astype(np.float32), od_e.astype(np.float32)


def render_patch(rng: np.random.Generator, label: int, cfg: SyntheticConfig, *,
                 style: SlideStyle | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One patch of class ``label`` (0 NC, 1 G3, 2 G4, 3 G5) -> (RGB uint8 [n, n, 3], mask uint8
    [n, n]: 0 benign, 3/4/5 on the graded region). ``style``: the slide's (default: drawn from rng)."""
    if label not in range(len(CLASSES)):
        raise ConfigError(f"label={label!r}: expected 0..3 for {CLASSES}")
    check_config(cfg)
    n, mpp, d = int(cfg.patch_size), 10.0 / float(cfg.magnification), float(cfg.difficulty)
    style = style or random_style(rng)
    sc = Scene(rng, n, mpp, style)
    px, q = sc.px, max(1, n // 64)
    sigma = 0.03 + 0.15 * d  # spread of the latent severity: overlap of neighbouring grades
    s = _SEVERITY[label] + rng.normal(0, sigma)
    s_benign = rng.normal(0, sigma) if label == 0 else rng.normal(0, 0.05)

    region = None if label == 0 else _region(rng, n, rng.uniform(0.2, 0.7))
    if region is None:
        benign(sc, np.full((n // q, n // q), 1e6, np.float32), q, d, s_benign)
    else:
        benign(sc, _distance(region < 0.5, q), q, d, s_benign)
        inside = _distance(region > 0.5, q)
        kind = epithelial_nuclei(s, style)
        if label == 1:
            g3(sc, inside, q, d, kind)
        elif label == 2:
            g4(sc, inside, q, d, kind)
        else:
            g5(sc, region, inside, q, d, kind)
        for layer in (sc.cover["g"], sc.lumen["g"], sc.necro):
            layer *= region
        for layer in (sc.cover["b"], sc.lumen["b"]):
            layer *= 1 - region
    for o in ("b", "g"):
        np.minimum(sc.lumen[o], sc.cover[o], out=sc.lumen[o])
    epi = np.minimum(sc.cover["b"] + sc.cover["g"], 1)

    od_h, od_e = _stroma(sc, epi, region, d)
    fine = noise(rng, n, px(0.7))  # chromatin and cytoplasm grain (~1 µm)
    nuc_h, nuc_e = sc.render_nuclei(fine, region)

    # compose optical densities: each layer over the previous ones (od += alpha * (value - od))
    mid = noise(rng, n, px(2.5))
    grain = 1 + 0.12 * fine + 0.1 * mid
    sev = float(np.clip(s, 0, 1))
    epi_h = np.where(sc.cover["g"] > 0, rng.uniform(0.06, 0.16) + 0.04 * sev, rng.uniform(0.02, 0.07))
    epi_e = np.where(sc.cover["g"] > 0, rng.uniform(0.13, 0.26), rng.uniform(0.08, 0.16))
    lumen = np.minimum(sc.lumen["b"] + sc.lumen["g"], 1)
    layers = [(epi, epi_h * grain, epi_e * grain),
              (lumen, 0.0, 0.015 + 0.14 * sc.secretion * (1 + 0.5 * mid)),
              (sc.corpora, 0.05, 0.55 + 0.15 * mid), (sc.necro, 0.1 + 0.05 * fine, 0.4 + 0.12 * mid)]
    for alpha, h, e in layers:
        rows, cols = np.flatnonzero(alpha.any(1)), np.flatnonzero(alpha.any(0))
        if rows.size:  # paint the bounding box of the layer only
            box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
            h = h[box] if np.ndim(h) else h
            e = e[box] if np.ndim(e) else e
            od_h[box] += alpha[box] * (h - od_h[box])
            od_e[box] += alpha[box] * (e - od_e[box])
    od_h += nuc_h
    od_e += nuc_e
    image = beer_lambert(od_h, od_e, style, white_noise(rng, (3, n, n)))
    mask = np.zeros((n, n), np.uint8)
    if region is not None:
        mask[region > 0.5] = MASK_VALUES[label]
    return image, mask


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Area downsampling by an integer factor (what a lower magnification sees), float32."""
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    x = image[:h, :w].astype(np.float32)
    return x.reshape(h // factor, factor, w // factor, factor, *x.shape[2:]).mean(axis=(1, 3))
