"""Synthetic H&E prostate benchmark: the embedded default dataset (no download).

Why: the methods compare a 10x teacher with students at 2.5x-0.625x, so the data carries Gleason
evidence at two scales. *Fine* evidence (nuclear size and chromatin, nucleoli, the basal cell layer of
benign glands, small cribriform lumens) is a few micrometres wide and fades at 2.5x and below. *Coarse*
evidence (gland size, spacing, fusion, solid sheets, necrosis) survives downsampling but is made
ambiguous on purpose by benign and malignant mimics that only fine detail resolves: atrophic benign
glands look like G3, chronic inflammation (small dark lymphocytes) like solid G5, large G3 glands like
benign ones, solid G5 nests like G4 nests.

How a patch is drawn: lengths are in micrometres, µm/px = 10 / magnification (10x ≈ 1 µm/px; nuclei
6-12 µm). Stroma (eosin fibres, spindle nuclei), epithelium, lumens, necrosis and nuclei are painted as
hematoxylin and eosin optical densities and mixed per RGB channel by Beer-Lambert with the Ruifrok &
Johnston stain vectors, perturbed per slide with per-slide stain amounts and illumination. A graded
patch (G3/G4/G5) holds its pattern in one random region of 20-70 % of the patch among benign glands and
stroma; its mask marks that region with the SICAPv2 value (3/4/5), 0 elsewhere; NC masks are all 0.
Each patch has a latent severity (class mean + noise) that sets nuclear size, pleomorphism, chromatin
and nucleoli. ``difficulty`` in [0, 1] widens that noise (neighbouring grades overlap) and raises the
rate of mimics.

Layout (SICAPv2's, so the same reader loads it)::

    images/P003-S01_0007.jpg   patient 3, slide 1, patch 7; slide id = prefix before the first "_"
    masks/P003-S01_0007.png    0 benign, 3/4/5 Gleason grade
    partition/Test/{Train,Test}.xlsx                          ~25 % of the patients held out
    partition/Validation/Val1..Val{folds}/{Train,Test}.xlsx   patient-disjoint folds of the others
    dataset.json               settings, version, counts; written last (marks a complete dataset)

Patch k of slide s of patient p comes from ``np.random.default_rng([seed, p, s, k])``; stains,
patient traits, labels and the split from separate seed streams, so files do not depend on the
number of workers.

Benchmark v1 = the ``SyntheticConfig`` defaults, fixed before any method was compared; never tune
them (or the drawing, ``GENERATOR_REVISION`` = 1) to make a method win: seed 2023, 24 patients x 2
slides x 24 patches = 1152 patches of 128 x 128 px at 10x (a 128 µm field), balanced classes (exact
quotas per slide, so every table is balanced), difficulty 0.5, 4 folds (6 test patients; validation
groups of 5/5/4/4 patients). Gland sizes sit at the small end of the physical range so that a 128 µm
field holds whole glands; nuclei, nucleoli and lumens are at physical size.

Command line: ``python -m ird_tf.data.synthetic --out DIR [--preview PNG] [--patients N ...]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import fft as sfft
from scipy import ndimage

from ird_tf.config import ConfigError, SyntheticConfig

CLASSES: tuple[str, ...] = ("NC", "G3", "G4", "G5")
MASK_VALUES: tuple[int, ...] = (0, 3, 4, 5)
GENERATOR_REVISION = 1  # bump whenever drawing changes: it is part of the cache key
TEST_FRACTION = 0.25
JPEG_QUALITY = 90
# Ruifrok & Johnston (2001) optical-density vectors (R, G, B) of hematoxylin and eosin.
RUIFROK_HE = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
RUIFROK_HE = RUIFROK_HE / np.linalg.norm(RUIFROK_HE, axis=1, keepdims=True)
_SEVERITY = (0.0, 1 / 3, 2 / 3, 1.0)  # latent severity of NC, G3, G4, G5
_NAME = re.compile(r"^P\d{3,}-S\d{2,}_\d{4,}\.(jpg|png)$")
# spawn keys of the seed streams other than the patches' (see _seq)
_TAG_PATIENT, _TAG_SLIDE, _TAG_SPLIT, _TAG_LABELS, _TAG_UNLABELED, _TAG_UNLABELED_SLIDE, _TAG_PREVIEW = (
    range(1, 8))


# ----------------------------------------------------------------------------------- styles and seeds
@dataclass(frozen=True)
class SlideStyle:
    """What all patches of one slide share: the stain (per slide) and tissue traits (per patient)."""

    stain: np.ndarray  # (2, 3) unit OD vectors, rows hematoxylin and eosin
    amount: tuple[float, float]  # multipliers of the H and E optical densities
    white: float  # background intensity (illumination), 0..255
    nuclear_scale: float  # nuclei sizes x this (patient trait)
    gland_scale: float  # gland sizes x this (patient trait)


def random_style(rng: np.random.Generator, patient_rng: np.random.Generator | None = None) -> SlideStyle:
    """A slide's stain drawn around the Ruifrok vectors, and a patient's traits (from ``rng`` too if
    no ``patient_rng``)."""
    patient_rng = rng if patient_rng is None else patient_rng
    stain = np.abs(RUIFROK_HE + rng.normal(0.0, 0.035, (2, 3)))
    stain /= np.linalg.norm(stain, axis=1, keepdims=True)
    amount = (float(rng.uniform(0.8, 1.2)), float(rng.uniform(0.75, 1.25)))
    traits = np.exp(patient_rng.normal(0.0, (0.04, 0.08)))
    return SlideStyle(stain, amount, float(rng.uniform(235.0, 252.0)), float(traits[0]), float(traits[1]))


def _seq(entropy: Sequence[int], tag: int) -> np.random.SeedSequence:
    """A seed stream apart from the patch streams ``default_rng([seed, patient, slide, index])``."""
    return np.random.SeedSequence([int(e) for e in entropy], spawn_key=(tag,))


def slide_style(cfg: SyntheticConfig, patient: int, slide: int) -> SlideStyle:
    return random_style(np.random.default_rng(_seq([cfg.seed, patient, slide], _TAG_SLIDE)),
                        np.random.default_rng(_seq([cfg.seed, patient], _TAG_PATIENT)))


def patch_rng(cfg: SyntheticConfig, patient: int, slide: int, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, patient, slide, index])


# ------------------------------------------------------------------------------------ drawing helpers
def _white(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
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


def _noise(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    """Smooth Gaussian-like noise, unit variance, correlation length ``scale`` px. Large scales: a coarse
    white grid interpolated by separable B-splines; small ones: box-blurred white noise. Elementwise
    and einsum only (no BLAS threads), so the same bits whatever the number of workers."""
    if scale < 1.5:
        return _white(rng, (n, n))
    if scale < 4.0:
        size = int(round(scale))
        return ndimage.uniform_filter(_white(rng, (n, n)), size, mode="wrap") * np.float32(size)
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


def _fibres(rng: np.random.Generator, n: int, angle: float, spread: float, width: float) -> np.ndarray:
    """Wavy fibres running along ``angle`` (radians from x towards y), ``width`` px thick, unit variance:
    white noise filtered to frequencies within about ``spread`` radians of the fibres' normal."""
    cos2, sin2, k2, count = _frequencies(n)
    kappa = np.float32(1 / (4 * spread**2))  # von Mises in 2 x direction ~ Gaussian of sd ``spread``
    turn = -np.cos(2 * angle) * cos2 - np.sin(2 * angle) * sin2  # cos(2 (direction - angle - 90°))
    filt = np.exp(kappa * (turn - 1) - np.float32(0.5 * (2 * np.pi * width) ** 2) * k2)
    filt[0, 0] = 0
    std = np.sqrt((count * filt * filt).sum()) / n  # Parseval: variance of the filtered white noise
    return (sfft.irfft2(sfft.rfft2(_white(rng, (n, n))) * (filt / std), s=(n, n))).astype(np.float32)


def _grid(rng: np.random.Generator, h: int, w: int, spacing: float,
          jitter: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Jittered grid of points (y, x) over an h x w box, ``spacing`` px apart."""
    gy, gx = np.arange(spacing / 2, h, spacing), np.arange(spacing / 2, w, spacing)
    y, x = (a.ravel() for a in np.meshgrid(gy, gx, indexing="ij"))
    j = rng.uniform(-jitter, jitter, (2, y.size)) * spacing
    return y + j[0], x + j[1]


def _at(img: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Values of ``img`` at the pixels holding the points (y, x), clamped to the image."""
    iy = np.clip(y.astype(np.intp), 0, img.shape[0] - 1)
    return img[iy, np.clip(x.astype(np.intp), 0, img.shape[1] - 1)]


def _harmonics(rng: np.random.Generator, ks: tuple[int, int], amp: float, count: int = 3) -> np.ndarray:
    """Rows (k, amplitude, phase) of a radius modulation 1 + sum a cos(k theta + phase)."""
    u = rng.random((3, count))
    k = ks[0] + np.floor(u[0] * (ks[1] - ks[0] + 1))
    return np.stack([k, amp * u[1], 2 * np.pi * u[2]], 1).astype(np.float32)


def _radius(th: np.ndarray, r: float, harm: np.ndarray) -> np.ndarray:
    out = np.ones_like(th)
    for k, a, p in harm:
        out += a * np.cos(k * th + p)
    return out * np.float32(r)


@dataclass
class _Shape:
    """A drawn gland or nest: centre, outline r(1 + harmonics), and its soft mask in the box ``sl``."""

    cy: float
    cx: float
    r: float
    harm: np.ndarray
    sl: tuple[slice, slice]
    outer: np.ndarray
    th: np.ndarray
    rr: np.ndarray

    def radius(self, th: np.ndarray) -> np.ndarray:
        return _radius(th, self.r, self.harm)


@dataclass
class _Nuclei:
    """Nuclear appearance; sizes in µm, densities as hematoxylin OD."""

    length: float  # mean long-axis diameter
    aspect: float  # short / long
    pleo: float  # log-sd of sizes (pleomorphism)
    dens: float  # OD at the rim
    vesic: float  # 0 solid .. 1 empty centre (vesicular chromatin)
    coarse: float  # chromatin texture amplitude
    p_nucleolus: float
    nucleolus: float  # nucleolus diameter


def _epithelial_nuclei(s: float, style: SlideStyle) -> _Nuclei:
    """Nuclei of epithelium with latent severity s (0 benign .. 1 G5): bigger, paler (vesicular),
    coarser chromatin, more and larger nucleoli as s grows."""
    s = float(np.clip(s, -0.2, 1.2))
    return _Nuclei(
        length=float(np.clip(6.6 + 4.4 * s, 6.0, 12.0)) * style.nuclear_scale,
        aspect=0.68 + 0.16 * s, pleo=0.05 + 0.10 * s, dens=1.3 - 0.3 * s,
        vesic=float(np.clip(0.05 + 0.6 * s, 0.0, 0.65)), coarse=0.1 + 0.45 * s,
        p_nucleolus=float(np.clip(2.4 * s - 0.3, 0.0, 0.95)), nucleolus=1.2 + 0.9 * s,
    )


_NUCLEI_FIELDS = ("y", "x", "a", "b", "ang", "dens", "vesic", "coarse", "nl", "nly", "nlx", "owner")


class _Scene:
    """Layers of one patch in px; structures are owned by ``b`` (benign), ``g`` (graded) or ``s``
    (stroma) so that the graded region can clip them."""

    def __init__(self, rng: np.random.Generator, n: int, mpp: float, style: SlideStyle):
        self.rng, self.n, self.mpp, self.style = rng, n, mpp, style
        self.cover = {"b": self.zeros(), "g": self.zeros()}
        self.lumen = {"b": self.zeros(), "g": self.zeros()}
        self.necro, self.secretion, self.corpora = self.zeros(), self.zeros(), self.zeros()
        self.nuc: list[np.ndarray] = []  # (len(_NUCLEI_FIELDS), m) blocks
        self._rings: dict[tuple, tuple[_Nuclei, list]] = {}

    def zeros(self) -> np.ndarray:
        return np.zeros((self.n, self.n), np.float32)

    def px(self, um: float) -> float:
        return um / self.mpp

    def gland(self, owner: str, cy: float, cx: float, r: float, harm: np.ndarray,
              t: float | None) -> _Shape | None:
        """Outline of radius ``r`` px; epithelium ``t`` px thick around a lumen (None: solid)."""
        ext, n = r * (1 + float(harm[:, 1].sum())) + 2, self.n
        y0, y1 = max(0, int(cy - ext)), min(n, int(cy + ext) + 2)
        x0, x1 = max(0, int(cx - ext)), min(n, int(cx + ext) + 2)
        if y0 >= y1 or x0 >= x1:
            return None
        dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
        rr, th = np.sqrt(dy * dy + dx * dx), np.arctan2(dy, dx)
        big_r = _radius(th, r, harm)
        sl = (slice(y0, y1), slice(x0, x1))
        outer = np.clip(big_r - rr + 0.5, 0, 1)
        np.maximum(self.cover[owner][sl], outer, out=self.cover[owner][sl])
        if t is not None:
            lumen = self.lumen[owner][sl]
            np.maximum(lumen, np.clip(big_r - t - rr + 0.5, 0, 1), out=lumen)
        return _Shape(cy, cx, r, harm, sl, outer, th, rr)

    def _stamp(self, y: np.ndarray, x: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        """Flat pixel indices (N, k, k) of a k x k window around each point, offsets dy (N, k, 1) and
        dx (N, 1, k) from the point, and the in-image mask."""
        off = np.arange(k) - k // 2
        iy, ix = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
        yy, xx = iy[:, None, None] + off[None, :, None], ix[:, None, None] + off[None, None, :]
        ok = (yy >= 0) & (yy < self.n) & (xx >= 0) & (xx < self.n)
        dy = (yy - y[:, None, None]).astype(np.float32)
        dx = (xx - x[:, None, None]).astype(np.float32)
        return yy * self.n + xx, dy, dx, ok

    def disks(self, layer: np.ndarray, y: np.ndarray, x: np.ndarray, r: np.ndarray,
              value: float = 1.0) -> None:
        """Soft disks of radii ``r`` px painted into ``layer`` (union, clipped at ``value``)."""
        keep = (y > -r) & (y < self.n + r) & (x > -r) & (x < self.n + r)
        if not keep.any():
            return
        y, x, r = y[keep], x[keep], r[keep]
        idx, dy, dx, ok = self._stamp(y, x, 2 * int(np.ceil(r.max())) + 3)
        val = np.clip(r[:, None, None] - np.sqrt(dy * dy + dx * dx) + 0.5, 0, 1) * value
        idx, val = idx[ok], val[ok]
        flat = layer.reshape(-1)  # a view: small sets of disks touch few pixels, so add in place
        np.add.at(flat, idx, val.astype(np.float32))
        np.minimum(flat[idx], value, out=val)
        flat[idx] = val

    # -- nuclei
    def add_nuclei(self, owner: str, y: np.ndarray, x: np.ndarray, kind: _Nuclei,
                   angle: np.ndarray | None = None, *, aspect: float | None = None,
                   length: float | None = None, dens: float | None = None) -> None:
        """Nuclei of ``kind`` centred at (y, x) px (random orientation unless ``angle``); sizes,
        aspect and density vary per nucleus around the kind's values (or the overrides)."""
        m = y.size
        if m == 0:
            return
        g, u = self.rng.standard_normal((2, m)), self.rng.random((6, m))
        rec = np.empty((len(_NUCLEI_FIELDS), m), np.float32)
        rec[0], rec[1] = y, x
        rec[2] = self.px((kind.length if length is None else length) * np.exp(kind.pleo * g[0])) / 2
        rec[3] = rec[2] * np.clip((kind.aspect if aspect is None else aspect) * np.exp(0.08 * g[1]), 0.15, 1)
        rec[4] = np.pi * u[0] if angle is None else angle
        rec[5] = (kind.dens if dens is None else dens) * (0.85 + 0.3 * u[1])
        rec[6], rec[7] = kind.vesic, kind.coarse
        rec[8] = np.where(u[2] < kind.p_nucleolus, self.px(kind.nucleolus) * (0.8 + 0.45 * u[3]), 0.0)
        rec[9], rec[10] = (u[4] - 0.5) * 0.6 * rec[2], (u[5] - 0.5) * 0.6 * rec[2]
        rec[11] = "bgs".index(owner)
        self.nuc.append(rec)

    def ring_nuclei(self, owner: str, shape: _Shape | None, depth: float, spacing: float, kind: _Nuclei,
                    *, tangential: bool = False, **over: float) -> None:
        """A row of nuclei ``depth`` px inside the outline, ``spacing`` px apart, long axes radial or
        tangential. Rows are queued and drawn together by :meth:`flush_rings` (far fewer calls)."""
        if shape is not None:
            key = (owner, id(kind), tangential, tuple(sorted(over.items())))
            self._rings.setdefault(key, (kind, []))[1].append((shape, depth, spacing))

    def flush_rings(self) -> None:
        rng = self.rng
        for (owner, _, tangential, over), (kind, rows) in self._rings.items():
            m = np.array([max(3, int(2 * np.pi * max(sh.r - dep, 1.0) / sp)) for sh, dep, sp in rows])
            ring = np.repeat(np.arange(len(rows)), m)
            j = np.arange(ring.size) - np.repeat(np.cumsum(m) - m, m)
            u = rng.random((3, ring.size))
            phase = rng.uniform(0, 2 * np.pi, len(rows))
            th = ((j + 0.4 * u[0] - 0.2) * (2 * np.pi / m[ring]) + phase[ring]).astype(np.float32)
            harm = np.zeros((len(rows), max(len(sh.harm) for sh, _, _ in rows), 3), np.float32)
            for i, (sh, _, _) in enumerate(rows):
                harm[i, : len(sh.harm)] = sh.harm
            h = harm[ring]  # (N, H, 3): k, amplitude, phase
            cy, cx, r, depth = (np.array([v for v in col], np.float32) for col in
                                zip(*[(sh.cy, sh.cx, sh.r, dep) for sh, dep, _ in rows], strict=True))
            rad = r[ring] * (1 + (h[..., 1] * np.cos(h[..., 0] * th[:, None] + h[..., 2])).sum(1))
            rad -= depth[ring] * (0.9 + 0.2 * u[1])
            ok = rad > 0
            ang = th + (np.pi / 2 if tangential else 0.0) + 0.5 * (u[2] - 0.5)
            self.add_nuclei(owner, (cy[ring] + rad * np.sin(th))[ok], (cx[ring] + rad * np.cos(th))[ok], kind,
                            ang[ok], **dict(over))
        self._rings = {}

    def fill_nuclei(self, owner: str, where: np.ndarray, spacing: float, kind: _Nuclei,
                    origin: tuple[int, int] = (0, 0)) -> None:
        """Nuclei on a jittered grid wherever ``where`` (a box at ``origin``) exceeds 0.5."""
        y, x = _grid(self.rng, where.shape[0], where.shape[1], spacing)
        keep = _at(where, y, x) > 0.5
        self.add_nuclei(owner, y[keep] + origin[0], x[keep] + origin[1], kind)

    def render_nuclei(self, fine: np.ndarray, region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Hematoxylin and eosin OD of all nuclei: soft ellipses, darker rim (vesicular), chromatin
        texture from ``fine`` noise, nucleoli; stamped in size buckets and summed with bincount."""
        n = self.n
        self.flush_rings()
        if not self.nuc:
            return self.zeros(), self.zeros()
        nu = dict(zip(_NUCLEI_FIELDS, np.concatenate(self.nuc, axis=1), strict=True))
        y, x, a = nu["y"], nu["x"], nu["a"]
        keep = (y > -a) & (y < n + a) & (x > -a) & (x < n + a)
        keep &= _at(self.lumen["b"] + self.lumen["g"], y, x) < 0.5
        if region is not None:
            inside = _at(region, y, x) > 0.5
            keep &= np.where(nu["owner"] == 1, inside, np.where(nu["owner"] == 0, ~inside, True))
        nu = {f: v[keep] for f, v in nu.items()}
        if not keep.any():
            return self.zeros(), self.zeros()
        ks = 2 * np.ceil(nu["a"] + 0.75).astype(int) + 1
        order = np.argsort(ks, kind="stable")
        nu, ks = {f: v[order] for f, v in nu.items()}, ks[order]
        flat = fine.ravel()
        idx_h, val_h = [], []
        edges = np.flatnonzero(np.diff(ks)) + 1
        for lo, hi in zip([0, *edges], [*edges, ks.size], strict=True):  # one window size per bucket
            sel = {f: nu[f][lo:hi, None, None] for f in ("ang", "a", "b", "dens", "vesic", "coarse")}
            idx, dy, dx, ok = self._stamp(nu["y"][lo:hi], nu["x"][lo:hi], int(ks[lo]))
            c, s = np.cos(sel["ang"]), np.sin(sel["ang"])
            u, v = (dx * c + dy * s) / sel["a"], (dy * c - dx * s) / sel["b"]
            rho2 = u * u + v * v
            edge = np.clip((1 - np.sqrt(rho2)) * sel["b"] + 0.5, 0, 1)
            h = edge * sel["dens"] * (1 - sel["vesic"] * np.clip(1 - rho2, 0, 1))
            ok &= edge > 0
            idx = idx[ok]
            idx_h.append(idx)
            val_h.append(h[ok] * (1 + sel["coarse"].ravel()[ok.nonzero()[0]] * flat[idx]))
        od_h = np.bincount(np.concatenate(idx_h), np.concatenate(val_h), minlength=n * n)
        od_e = 0.25 * od_h  # nuclei are stained by a little eosin too (purple rather than blue)
        has = nu["nl"] > 0
        if has.any():  # nucleoli: small eosinophilic (magenta) dots
            r = nu["nl"][has] / 2
            idx, dy, dx, ok = self._stamp(nu["y"][has] + nu["nly"][has], nu["x"][has] + nu["nlx"][has],
                                          2 * int(np.ceil(r.max())) + 3)
            dot = np.clip(r[:, None, None] - np.sqrt(dy * dy + dx * dx) + 0.5, 0, 1)
            dots = np.bincount(idx[ok], dot[ok], minlength=n * n)
            od_h += 0.35 * dots
            od_e += 0.9 * dots
        return (np.minimum(od_h, 2.0).reshape(n, n).astype(np.float32),
                np.minimum(od_e, 1.2).reshape(n, n).astype(np.float32))


def _pack(rng: np.random.Generator, dist: np.ndarray, q: int, tries: int, r_range: tuple[float, float],
          gap: tuple[float, float], fit: float, margin: float = 0.0,
          taken: Sequence[tuple[float, float, float]] = ()) -> list[tuple[float, float, float]]:
    """Greedy random packing of disks (cy, cx, r) px. Centres where ``dist`` (a distance map on a grid
    of ``q`` px cells, in px) >= fit * r + margin; at least ``gap`` px (< 0: overlapping, fused) apart."""
    cand = np.flatnonzero(dist.ravel() >= fit * r_range[0] + margin)
    if cand.size == 0 or tries <= 0:
        return []
    w = dist.shape[1]
    picks = rng.choice(cand, size=tries)
    u = rng.random((4, tries))
    cy, cx = (picks // w + u[0]) * q, (picks % w + u[1]) * q
    radii = np.minimum(r_range[0] + (r_range[1] - r_range[0]) * u[2], (dist.flat[picks] - margin) / fit)
    gaps = gap[0] + (gap[1] - gap[0]) * u[3]
    placed = [tuple(map(float, t)) for t in taken]
    out = []
    for y, x, r, g in zip(cy.tolist(), cx.tolist(), radii.tolist(), gaps.tolist(), strict=True):
        if r < r_range[0]:
            continue
        # plain floats: a handful of disks, so a Python loop beats array calls here
        if any((y - oy) ** 2 + (x - ox) ** 2 < (o + r + g) ** 2 and o + r + g > 0 for oy, ox, o in placed):
            continue
        placed.append((y, x, r))
        out.append((y, x, r))
    return out


# ----------------------------------------------------------------------------------- tissue patterns
def _benign(sc: _Scene, dist: np.ndarray, q: int, difficulty: float, s: float) -> None:
    """Benign glands: large, folded (papillary) outlines, tall pale luminal cells over a basal layer
    of flat dark nuclei; at higher difficulty some small atrophic glands (a G3 mimic with basal cells)."""
    rng, px, gs = sc.rng, sc.px, sc.style.gland_scale
    kind = _epithelial_nuclei(s, sc.style)
    big = _pack(rng, dist, q, 14, (px(26 * gs), px(58 * gs)), (px(8), px(28)), fit=1.3, margin=px(5))
    atrophy = rng.random() < 0.1 + 0.6 * difficulty
    small = _pack(rng, dist, q, 25 if atrophy else 0, (px(10 * gs), px(20 * gs)), (px(5), px(18)),
                  fit=1.15, margin=px(5), taken=big)
    for cy, cx, r in big:
        harm = np.concatenate([_harmonics(rng, (2, 3), 0.08, 2), _harmonics(rng, (5, 9), 0.07, 2)])
        shape = sc.gland("b", cy, cx, r, harm, px(rng.uniform(11, 15)))
        sc.ring_nuclei("b", shape, px(1.8), px(rng.uniform(9, 13)), kind, tangential=True,
                       aspect=0.4, dens=1.4)
        sc.ring_nuclei("b", shape, px(3.5 + 0.55 * kind.length), px(kind.length * kind.aspect * 1.3),
                       kind)
        if rng.random() < 0.3:
            th, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.4) * r
            sc.disks(sc.corpora, np.array([cy + d * np.sin(th)]), np.array([cx + d * np.cos(th)]),
                     np.array([px(rng.uniform(5, 11))]))
    for cy, cx, r in small:
        shape = sc.gland("b", cy, cx, r, _harmonics(rng, (2, 3), 0.06), px(rng.uniform(5, 7)))
        sc.ring_nuclei("b", shape, px(1.5), px(rng.uniform(9, 13)), kind, tangential=True,
                       aspect=0.4, dens=1.4)
        sc.ring_nuclei("b", shape, px(4.0), px(kind.length), kind, tangential=True, aspect=0.55,
                       dens=1.4)


def _g3(sc: _Scene, dist: np.ndarray, q: int, difficulty: float, kind: _Nuclei) -> None:
    """Small, separate, well-formed glands: round lumens, one layer of cells, no basal layer."""
    rng, px, gs = sc.rng, sc.px, sc.style.gland_scale
    large = rng.random() < 0.5 * difficulty  # mimic of benign: bigger, slightly lobulated glands
    r_range = (px(13 * gs), px((30 if large else 22) * gs))
    for cy, cx, r in _pack(rng, dist, q, 100, r_range, (px(2 + 5 * (1 - difficulty)), px(14)), fit=0.35):
        t = min(px(kind.length * rng.uniform(0.8, 1.0) + 2.5), r - px(4))
        harm = _harmonics(rng, (2, 5) if large else (2, 3), 0.1 if large else 0.07)
        shape = sc.gland("g", cy, cx, r, harm, t)
        sc.ring_nuclei("g", shape, px(1.2 + 0.5 * kind.length), px(kind.length * 1.1), kind)
        if rng.random() < 0.3:
            sc.disks(sc.secretion, np.array([cy]), np.array([cx]), np.array([max(r - t - px(1.5), 0.5)]))


def _nest(sc: _Scene, cy: float, cx: float, r: float, kind: _Nuclei,
          lumens: tuple[float, float, float] | None, necrosis: float = 0.0) -> None:
    """A solid epithelial nest. ``lumens`` = (spacing, r_min, r_max) µm punches cribriform lumens;
    ``necrosis`` > 0: comedonecrosis of that relative radius, with nuclear debris."""
    rng, px = sc.rng, sc.px
    shape = sc.gland("g", cy, cx, r, _harmonics(rng, (2, 5), 0.12), None)
    if shape is None:
        return
    where = shape.outer.copy()
    y0, x0 = shape.sl[0].start, shape.sl[1].start
    if lumens is not None:
        ly, lx = _grid(rng, *where.shape, px(lumens[0]), 0.3)
        dy, dx = ly + y0 - cy, lx + x0 - cx
        lr = px(rng.uniform(lumens[1], lumens[2], ly.size))
        keep = np.hypot(dy, dx) < shape.radius(np.arctan2(dy, dx).astype(np.float32)) - lr - px(4.5)
        sc.disks(sc.lumen["g"], ly[keep] + y0, lx[keep] + x0, lr[keep])
    if necrosis > 0:
        nr = necrosis * r
        nec = np.clip(_radius(shape.th, nr, _harmonics(rng, (3, 6), 0.15)) - shape.rr + 0.5, 0, 1)
        np.maximum(sc.necro[shape.sl], nec, out=sc.necro[shape.sl])
        where *= 1 - nec
        m = int(np.pi * nr * nr / px(5) ** 2)
        t, a = np.sqrt(rng.random(m)) * nr * 0.9, rng.uniform(0, 2 * np.pi, m)
        sc.add_nuclei("g", cy + t * np.sin(a), cx + t * np.cos(a),
                      replace(kind, pleo=0.35, aspect=0.85, vesic=0.0, p_nucleolus=0.0), length=2.4, dens=1.6)
    sc.fill_nuclei("g", where, px(kind.length * rng.uniform(1.0, 1.2)), kind, (y0, x0))


def _g4(sc: _Scene, dist: np.ndarray, q: int, difficulty: float, kind: _Nuclei) -> None:
    """Cribriform nests with many small punched-out lumens, and fused / poorly formed glands."""
    rng, px, gs = sc.rng, sc.px, sc.style.gland_scale
    p_crib = rng.uniform(0.2, 1.0)
    nests = _pack(rng, dist, q, int(round(14 * p_crib)), (px(20 * gs), px(45 * gs)), (px(3), px(10)),
                  fit=0.4)
    lum = (rng.uniform(8, 12), 1.4 + 0.5 * (1 - difficulty), 4.5)
    for cy, cx, r in nests:
        _nest(sc, cy, cx, r, kind, lum)
    fused = _pack(rng, dist, q, 120, (px(10 * gs), px(22 * gs)), (px(-14), px(1 + 3 * difficulty)),
                  fit=0.3, taken=[(cy, cx, r + px(4)) for cy, cx, r in nests])
    for cy, cx, r in fused:
        t = None if rng.random() < 0.3 else r * rng.uniform(0.5, 0.8)
        shape = sc.gland("g", cy, cx, r, _harmonics(rng, (2, 5), 0.15), t)
        sc.ring_nuclei("g", shape, px(1.2 + 0.5 * kind.length), px(kind.length * 1.05), kind)
        if t is None or t > px(2 * kind.length):
            sc.ring_nuclei("g", shape, px(2.4 + 1.5 * kind.length), px(kind.length * 1.05), kind)


def _g5(sc: _Scene, region: np.ndarray, dist: np.ndarray, q: int, difficulty: float, kind: _Nuclei) -> None:
    """No glands: solid sheets, cords and single cells, or nests with comedonecrosis; at higher
    difficulty solid nests without lumens (a G4 mimic at low magnification)."""
    rng, px, gs, n = sc.rng, sc.px, sc.style.gland_scale, sc.n
    p = np.array([0.45, 0.2, 0.35, 0.4 * difficulty])
    mode = ("sheets", "cords", "comedo", "nests")[int(rng.choice(4, p=p / p.sum()))]
    spacing = px(kind.length * rng.uniform(0.95, 1.1))
    if mode in ("comedo", "nests"):
        for cy, cx, r in _pack(rng, dist, q, 12, (px(22 * gs), px(50 * gs)), (px(4), px(14)), fit=0.5):
            _nest(sc, cy, cx, r, kind, None, rng.uniform(0.3, 0.55) if mode == "comedo" else 0.0)
        if mode == "nests":
            return
        mode = "sheets" if rng.random() < 0.5 else "cords"
    if mode == "sheets":  # solid sheets split by thin fibrovascular septa
        free = region * (1 - sc.cover["g"]) * (np.abs(_noise(rng, n, px(30))) > rng.uniform(0.06, 0.14))
        np.maximum(sc.cover["g"], free, out=sc.cover["g"])
        sc.fill_nuclei("g", free, spacing, kind)
        return
    # cords of cells (level-set bands of a smooth field) and single cells in the stroma
    f = _noise(rng, n, px(rng.uniform(14, 22)))
    cords = region * (np.abs(f - rng.uniform(-0.5, 0.5)) < rng.uniform(0.25, 0.4)) * (1 - sc.cover["g"])
    np.maximum(sc.cover["g"], cords, out=sc.cover["g"])
    sc.fill_nuclei("g", cords, spacing * 0.95, kind)
    y, x = _grid(rng, n, n, px(rng.uniform(12, 20)), 0.5)
    keep = (_at(region, y, x) > 0.5) & (_at(sc.cover["g"], y, x) < 0.1)
    sc.disks(sc.cover["g"], y[keep], x[keep], np.full(int(keep.sum()), px(kind.length * 0.75)))
    sc.add_nuclei("g", y[keep], x[keep], kind)


# -------------------------------------------------------------------------------------------- render
def _region(rng: np.random.Generator, n: int, frac: float) -> np.ndarray:
    """A random blob (noisy outline, random centre) covering exactly round(frac * n^2) pixels of an
    n x n grid."""
    cy, cx = rng.uniform(0.15, 0.85, 2) * n
    yy, xx = np.arange(n, dtype=np.float32)[:, None] - cy, np.arange(n, dtype=np.float32)[None, :] - cx
    field = (_noise(rng, n, n / 4) - 3.0 * np.sqrt(yy * yy + xx * xx) / n).ravel()
    k = int(round(frac * n * n))
    thr = np.partition(field, field.size - k)[field.size - k]
    return (field >= thr).astype(np.float32).reshape(n, n)


def _distance(mask: np.ndarray, q: int) -> np.ndarray:
    """Distance (px) to the nearest pixel outside ``mask``, on a grid of q x q cells (fast)."""
    return ndimage.distance_transform_edt(mask[q // 2 :: q, q // 2 :: q]).astype(np.float32) * q


def _check(cfg: SyntheticConfig) -> None:
    cfg.validate()
    if cfg.magnification <= 0:
        raise ConfigError(
            f"synthetic.magnification={cfg.magnification!r}: expected a number > 0 (10 = 1 µm/px)")
    if cfg.patch_size < 32:
        raise ConfigError(f"synthetic.patch_size={cfg.patch_size!r}: expected at least 32 px")
    if cfg.folds < 2:
        raise ConfigError(f"synthetic.folds={cfg.folds!r}: expected at least 2")


def _stroma(sc: _Scene, epi: np.ndarray, region: np.ndarray | None, d: float) -> tuple[np.ndarray, ...]:
    """H and E optical density of the stroma (eosinophilic wavy fibres with thin clefts); adds its
    spindle nuclei along the fibres, scattered lymphocytes and, at a rate growing with difficulty, a
    patch of chronic inflammation (dense small dark nuclei: solid tumour at low power, not at 10x)."""
    rng, px, n = sc.rng, sc.px, sc.n
    angle = rng.uniform(0, np.pi)
    fib = _fibres(rng, n, angle, rng.uniform(0.15, 0.35), px(1.0))
    od_e = np.clip(0.85 + 0.22 * fib, 0.15, 1.5)
    od_e *= np.clip(fib + 2.6, 0, 1)  # retraction clefts along the fibres
    od_e *= rng.uniform(0.32, 0.5) * (1 + 0.1 * _noise(rng, n, px(14)))
    od_h = rng.uniform(0.05, 0.1) + 0.015 * fib
    y, x = _grid(rng, n, n, px(rng.uniform(16, 24)), 0.5)
    keep = _at(epi, y, x) < 0.05
    spindle = _Nuclei(12.0, 0.22, 0.15, 1.1, 0.0, 0.2, 0.0, 0.0)
    sc.add_nuclei("s", y[keep], x[keep], spindle, angle + rng.normal(0, 0.2, int(keep.sum())))
    lymphocyte = _Nuclei(5.8, 0.9, 0.08, 1.5, 0.0, 0.15, 0.0, 0.0)
    m = int(rng.poisson(0.4 * (n * sc.mpp / 100) ** 2 * (1 + 3 * rng.random())))
    y, x = rng.uniform(0, n, (2, m))
    keep = _at(epi, y, x) < 0.05
    sc.add_nuclei("s", y[keep], x[keep], lymphocyte)
    if rng.random() < 0.15 + 0.5 * d:
        blob = _region(rng, 32, rng.uniform(0.08, 0.3))  # smooth: a coarse grid is enough
        y, x = _grid(rng, n, n, px(rng.uniform(6.5, 8.5)), 0.45)
        keep = (_at(blob, y * 32 / n, x * 32 / n) > 0.5) & (_at(epi, y, x) < 0.05)
        if region is not None:
            keep &= _at(region, y, x) < 0.5
        sc.add_nuclei("s", y[keep], x[keep], lymphocyte)
    return od_h.astype(np.float32), od_e.astype(np.float32)


def _beer_lambert(od_h: np.ndarray, od_e: np.ndarray, style: SlideStyle, noise: np.ndarray) -> np.ndarray:
    """RGB uint8 from H and E optical densities: I_c = I0 exp(-(OD_H h_c + OD_E e_c)) + sensor noise."""
    stain = (style.stain * np.array(style.amount)[:, None]).astype(np.float32)
    image = np.empty((*od_h.shape, 3), np.uint8)
    for c in range(3):
        img = np.exp(-(od_h * stain[0, c] + od_e * stain[1, c] + np.float32(0.01)))
        img *= np.float32(style.white)
        img += noise[c] * np.float32(1.2) + np.float32(0.5)
        image[..., c] = np.clip(img, 0, 255)
    return image


def render_patch(rng: np.random.Generator, label: int, cfg: SyntheticConfig, *,
                 style: SlideStyle | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One patch of class ``label`` (0 NC, 1 G3, 2 G4, 3 G5) -> (RGB uint8 [n, n, 3], mask uint8
    [n, n]: 0 benign, 3/4/5 on the graded region). ``style``: the slide's (default: drawn from rng)."""
    if label not in range(len(CLASSES)):
        raise ConfigError(f"label={label!r}: expected 0..3 for {CLASSES}")
    _check(cfg)
    n, mpp, d = int(cfg.patch_size), 10.0 / float(cfg.magnification), float(cfg.difficulty)
    style = style or random_style(rng)
    sc = _Scene(rng, n, mpp, style)
    px, q = sc.px, max(1, n // 64)
    sigma = 0.03 + 0.15 * d  # spread of the latent severity: overlap of neighbouring grades
    s = _SEVERITY[label] + rng.normal(0, sigma)
    s_benign = rng.normal(0, sigma) if label == 0 else rng.normal(0, 0.05)

    region = None if label == 0 else _region(rng, n, rng.uniform(0.2, 0.7))
    if region is None:
        _benign(sc, np.full((n // q, n // q), 1e6, np.float32), q, d, s_benign)
    else:
        _benign(sc, _distance(region < 0.5, q), q, d, s_benign)
        inside = _distance(region > 0.5, q)
        kind = _epithelial_nuclei(s, style)
        if label == 1:
            _g3(sc, inside, q, d, kind)
        elif label == 2:
            _g4(sc, inside, q, d, kind)
        else:
            _g5(sc, region, inside, q, d, kind)
        for layer in (sc.cover["g"], sc.lumen["g"], sc.necro):
            layer *= region
        for layer in (sc.cover["b"], sc.lumen["b"]):
            layer *= 1 - region
    for o in ("b", "g"):
        np.minimum(sc.lumen[o], sc.cover[o], out=sc.lumen[o])
    epi = np.minimum(sc.cover["b"] + sc.cover["g"], 1)

    od_h, od_e = _stroma(sc, epi, region, d)
    fine = _noise(rng, n, px(0.7))  # chromatin and cytoplasm grain (~1 µm)
    nuc_h, nuc_e = sc.render_nuclei(fine, region)

    # compose optical densities: each layer over the previous ones (od += alpha * (value - od))
    mid = _noise(rng, n, px(2.5))
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
    image = _beer_lambert(od_h, od_e, style, _white(rng, (3, n, n)))
    mask = np.zeros((n, n), np.uint8)
    if region is not None:
        mask[region > 0.5] = MASK_VALUES[label]
    return image, mask


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Area downsampling by an integer factor (what a lower magnification sees), float32."""
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    x = image[:h, :w].astype(np.float32)
    return x.reshape(h // factor, factor, w // factor, factor, *x.shape[2:]).mean(axis=(1, 3))


# ------------------------------------------------------------------------------------ dataset on disk
def _plain(cfg: SyntheticConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def config_hash(cfg: SyntheticConfig) -> str:
    """Short hash of the settings and the drawing revision: the cache key of a dataset."""
    text = json.dumps({"config": _plain(cfg), "revision": GENERATOR_REVISION}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def image_name(patient: int, slide: int, index: int) -> str:
    """``P003-S01_0007``: the slide id (``P003-S01``) is the prefix before the first "_", as in SICAPv2."""
    return f"P{patient:03d}-S{slide:02d}_{index:04d}"


def slide_labels(cfg: SyntheticConfig, patient: int, slide: int) -> np.ndarray:
    """Labels of a slide's patches: exact quotas from ``class_balance`` (largest remainder, ties
    rotated from slide to slide so that the whole set stays balanced), in a seeded random order."""
    w = np.asarray(cfg.class_balance, np.float64)
    raw = w / w.sum() * cfg.patches_per_slide
    counts = np.floor(raw + 1e-9).astype(int)
    turn = (patient * cfg.slides_per_patient + slide) % len(CLASSES)
    order = sorted(range(len(CLASSES)), key=lambda c: (-(raw[c] - counts[c]), (c - turn) % len(CLASSES)))
    counts[order[: cfg.patches_per_slide - counts.sum()]] += 1
    labels = np.repeat(np.arange(len(CLASSES)), counts)
    np.random.default_rng(_seq([cfg.seed, patient, slide], _TAG_LABELS)).shuffle(labels)
    return labels


def patient_split(cfg: SyntheticConfig) -> tuple[list[int], list[list[int]]]:
    """Patient ids (1-based) of the held-out test set (~25 %) and of the ``folds`` validation groups."""
    n_test = max(1, int(np.floor(TEST_FRACTION * cfg.patients + 0.5)))
    if cfg.patients - n_test < cfg.folds:
        raise ConfigError(
            f"synthetic.patients={cfg.patients} is too few: {n_test} go to the test set and each of the "
            f"{cfg.folds} folds needs at least one; expected patients >= {cfg.folds + n_test}"
        )
    perm = np.random.default_rng(_seq([cfg.seed], _TAG_SPLIT)).permutation(np.arange(1, cfg.patients + 1))
    test = sorted(int(p) for p in perm[:n_test])
    return test, [sorted(int(p) for p in g) for g in np.array_split(perm[n_test:], cfg.folds)]


def _save(root: Path, name: str, image: np.ndarray, mask: np.ndarray | None) -> None:
    Image.fromarray(image).save(root / "images" / f"{name}.jpg", quality=JPEG_QUALITY)
    if mask is not None:
        Image.fromarray(mask).save(root / "masks" / f"{name}.png", compress_level=1)


def _write_slide(cfg: SyntheticConfig, root: Path, patient: int, slide: int) -> list[tuple[str, int]]:
    style = slide_style(cfg, patient, slide)
    rows = []
    for index, label in enumerate(slide_labels(cfg, patient, slide)):
        name = image_name(patient, slide, index)
        _save(root, name, *render_patch(patch_rng(cfg, patient, slide, index), int(label), cfg, style=style))
        rows.append((f"{name}.jpg", int(label)))
    return rows


def _write_unlabeled(cfg: SyntheticConfig, root: Path, seed: int, slide: int, first: int, last: int) -> list:
    style = random_style(np.random.default_rng(_seq([seed, slide], _TAG_UNLABELED_SLIDE)))
    p = np.asarray(cfg.class_balance, np.float64)
    for k in range(first, last):
        rng = np.random.default_rng(_seq([seed, k], _TAG_UNLABELED))
        image, _ = render_patch(rng, int(rng.choice(len(CLASSES), p=p / p.sum())), cfg, style=style)
        _save(root, f"U{slide:04d}_{k:06d}", image, None)
    return [None] * (last - first)


def _run(jobs: list[tuple], fn: Callable, workers: int | None, progress: bool, total: int) -> list:
    """Runs ``fn(*job)`` for every job, inline (workers=1) or in spawned processes, in job order.
    ``workers=None``: all cores, but inline for small jobs (starting processes costs more)."""
    if workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = 1 if total < 200 else cores
    workers = max(1, min(int(workers), len(jobs)))
    results: list = [None] * len(jobs)
    done, shown, start = 0, 0, time.perf_counter()

    def tick(rows: list) -> None:
        nonlocal done, shown
        done += len(rows)
        if progress and (10 * done) // total > shown:
            shown = (10 * done) // total
            rate = done / max(time.perf_counter() - start, 1e-9)
            print(f"synthetic: {done}/{total} patches ({100 * done // total}%, {rate:.0f}/s)", flush=True)

    if workers == 1:
        for i, job in enumerate(jobs):
            results[i] = fn(*job)
            tick(results[i])
        return results
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            tick(results[futures[fut]])
    return results


def _write_table(path: Path, rows: list[tuple[str, int]]) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"image_name": [r[0] for r in rows]})
    for c, name in enumerate(CLASSES):
        table[name] = [int(r[1] == c) for r in rows]
    table.to_excel(path, index=False)


def generate(out_dir: str | Path, cfg: SyntheticConfig, *, workers: int | None = None,
             progress: bool = True) -> Path:
    """Writes the dataset in the SICAPv2 layout under ``out_dir`` and returns it. ``dataset.json`` is
    removed first and written last, so an interrupted run never looks complete."""
    _check(cfg)
    test, groups = patient_split(cfg)
    root = Path(out_dir)
    (root / "dataset.json").unlink(missing_ok=True)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    slides = range(1, cfg.slides_per_patient + 1)
    jobs = [(cfg, root, p, s) for p in range(1, cfg.patients + 1) for s in slides]
    total = len(jobs) * cfg.patches_per_slide
    if progress:
        print(f"synthetic: writing {total} patches to {root}", flush=True)
    per_slide = _run(jobs, _write_slide, workers, progress, total)
    rows = {job[2]: [] for job in jobs}
    for job, slide_rows in zip(jobs, per_slide, strict=True):
        rows[job[2]].extend(slide_rows)
    names = {r[0][:-4] for p in rows.values() for r in p}
    for sub, ext in (("images", ".jpg"), ("masks", ".png")):  # leftovers of an earlier, larger run
        for f in (root / sub).iterdir():
            if _NAME.match(f.name) and f.suffix == ext and f.stem not in names:
                f.unlink()

    def of(patients: list[int]) -> list[tuple[str, int]]:
        return [r for p in patients for r in rows[p]]

    rest = [p for g in groups for p in g]
    _write_table(root / "partition" / "Test" / "Test.xlsx", of(test))
    _write_table(root / "partition" / "Test" / "Train.xlsx", of(rest))
    for k, group in enumerate(groups, start=1):
        _write_table(root / "partition" / "Validation" / f"Val{k}" / "Test.xlsx", of(group))
        _write_table(root / "partition" / "Validation" / f"Val{k}" / "Train.xlsx",
                     of([p for p in rest if p not in group]))
    labels = np.array([r[1] for p in rows.values() for r in p])
    meta = {
        "name": "ird_tf synthetic H&E prostate benchmark",
        "version": cfg.version,
        "generator_revision": GENERATOR_REVISION,
        "hash": config_hash(cfg),
        "config": _plain(cfg),
        "classes": list(CLASSES),
        "mask_values": dict(zip(CLASSES, MASK_VALUES, strict=True)),
        "um_per_px": 10.0 / cfg.magnification,
        "counts": {"images": int(labels.size), "patients": cfg.patients, "slides": len(jobs),
                   "per_class": {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}},
        "partition": {"test_patients": test, **{f"Val{k}": g for k, g in enumerate(groups, start=1)}},
    }
    tmp = root / "dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, root / "dataset.json")
    if progress:
        print(f"synthetic: done, {labels.size} patches in {root}", flush=True)
    return root


def is_complete(root: str | Path, cfg: SyntheticConfig) -> bool:
    """True when ``root`` holds a finished dataset made from exactly ``cfg`` by this revision."""
    root = Path(root)
    try:
        meta = json.loads((root / "dataset.json").read_text())
        same = meta["config"] == _plain(cfg) and meta["generator_revision"] == GENERATOR_REVISION
        images = int(meta["counts"]["images"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (same and (root / "partition" / "Test" / "Test.xlsx").is_file()
            and sum(1 for _ in (root / "images").glob("*.jpg")) == images)


def ensure_dataset(cache_dir: str | Path, cfg: SyntheticConfig, *, workers: int | None = None,
                   progress: bool = True) -> Path:
    """The dataset for ``cfg`` under ``<cache_dir>/synthetic_<version>_<hash>``: reused when complete
    and made from the same settings, else generated (in a temporary folder, then renamed into place)."""
    _check(cfg)
    root = Path(cache_dir) / f"synthetic_{cfg.version}_{config_hash(cfg)}"
    if is_complete(root, cfg):
        print(f"synthetic: reusing {root}", flush=True)
        return root
    print(f"synthetic: generating {root}", flush=True)
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    generate(tmp, cfg, workers=workers, progress=progress)
    if root.exists() and not is_complete(root, cfg):
        shutil.rmtree(root)  # an unfinished or stale dataset under our own cache key
    try:
        tmp.rename(root)
    except OSError:  # another process finished the same dataset first
        if not is_complete(root, cfg):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def generate_unlabeled(out_dir: str | Path, cfg: SyntheticConfig, count: int, seed: int, *,
                       workers: int | None = None, progress: bool = True) -> Path:
    """``count`` images (no labels, no masks) in ``out_dir/images/`` for label-free distillation,
    drawn from seed streams apart from the labeled set's (even with the same seed)."""
    _check(cfg)
    if count < 1:
        raise ConfigError(f"count={count!r}: expected a number of unlabeled images >= 1")
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    size = cfg.patches_per_slide
    jobs = [(cfg, root, seed, k // size, k, min(k + size, count)) for k in range(0, count, size)]
    _run(jobs, _write_unlabeled, workers, progress, count)
    return root


# ------------------------------------------------------------------------------------------- preview
def preview(path_png: str | Path, cfg: SyntheticConfig, per_class: int = 2) -> Path:
    """A PNG grid: ``per_class`` patches of each class (rows) at the configured magnification, at 1/4
    and 1/8 of it (block mean, shown with nearest upsampling), and the mask."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    _check(cfg)
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    factors = (1, 4, 8)
    titles = [f"{cfg.magnification / f:g}x ({10 * f / cfg.magnification:g} µm/px)" for f in factors]
    titles.append("mask")
    rows = len(CLASSES) * per_class
    fig = Figure(figsize=(2.0 * len(titles), 2.0 * rows + 0.7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.asarray(fig.subplots(rows, len(titles), squeeze=False))
    cmap = ListedColormap(["#f4f4f4", "#f4f4f4", "#f4f4f4", "#2c7fb8", "#fdae61", "#d7191c"])
    for c, name in enumerate(CLASSES):
        for j in range(per_class):
            rng = np.random.default_rng(_seq([cfg.seed, c, j], _TAG_PREVIEW))
            image, mask = render_patch(rng, c, cfg)
            row = c * per_class + j
            for col, f in enumerate(factors):
                low = block_mean(image, f)
                axes[row, col].imshow(np.repeat(np.repeat(low, f, 0), f, 1).astype(np.uint8),
                                      interpolation="nearest")
            axes[row, 3].imshow(mask, cmap=cmap, vmin=0, vmax=5, interpolation="nearest")
            axes[row, 0].set_ylabel(f"{name} ({mask.astype(bool).mean():.0%})" if c else name, fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for col, t in enumerate(titles):
        axes[0, col].set_title(t, fontsize=9)
    fig.suptitle(f"Synthetic H&E benchmark {cfg.version}: {cfg.patch_size} px at {cfg.magnification:g}x, "
                 f"difficulty {cfg.difficulty:g} (mask: 0 benign, G3 blue, G4 orange, G5 red)", fontsize=9)
    fig.savefig(path, dpi=110)
    return path


# ---------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    d = SyntheticConfig()
    p = argparse.ArgumentParser(
        prog="python -m ird_tf.data.synthetic",
        description="Write the synthetic H&E prostate benchmark (SICAPv2 layout) and/or a preview PNG. "
                    "Defaults are benchmark v1.")
    p.add_argument("--out", type=Path, metavar="DIR", help="dataset folder (images/, masks/, partition/...)")
    p.add_argument("--preview", type=Path, metavar="PNG", help="write a preview grid here (alone: only that)")
    for flag, name in (("--patients", "patients"), ("--slides-per-patient", "slides_per_patient"),
                       ("--patches-per-slide", "patches_per_slide"), ("--patch-size", "patch_size"),
                       ("--folds", "folds"), ("--seed", "seed")):
        default = getattr(d, name)
        p.add_argument(flag, type=int, metavar="N", default=default, help=f"(default {default})")
    p.add_argument("--magnification", type=float, metavar="X", default=d.magnification,
                   help=f"10 = 1 µm/px (default {d.magnification:g})")
    p.add_argument("--class-balance", type=float, nargs=4, metavar=("NC", "G3", "G4", "G5"),
                   default=d.class_balance, help="relative class weights (default balanced)")
    p.add_argument("--difficulty", type=float, metavar="D", default=d.difficulty,
                   help=f"0..1 (default {d.difficulty:g})")
    p.add_argument("--workers", type=int, metavar="N", default=None,
                   help="processes (default: all cores, inline for small jobs; 1 = inline)")
    p.add_argument("--per-class", type=int, metavar="N", default=2, help="preview rows per class (default 2)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.out is None and args.preview is None:
        parser.error("give --out DIR (dataset) and/or --preview PNG")
    cfg = replace(SyntheticConfig(), seed=args.seed, patients=args.patients,
                  slides_per_patient=args.slides_per_patient, patches_per_slide=args.patches_per_slide,
                  patch_size=args.patch_size, magnification=args.magnification,
                  class_balance=tuple(args.class_balance), difficulty=args.difficulty, folds=args.folds)
    try:
        _check(cfg)
        if args.out is not None:
            patient_split(cfg)
            generate(args.out, cfg, workers=args.workers, progress=not args.quiet)
        if args.preview is not None:
            print(f"synthetic: preview {preview(args.preview, cfg, args.per_class)}")
    except ConfigError as e:
        parser.error(str(e))
    return 0


__all__ = [
    "CLASSES", "MASK_VALUES", "GENERATOR_REVISION", "RUIFROK_HE", "SlideStyle", "random_style", "slide_style",
    "patch_rng", "render_patch", "block_mean", "config_hash", "image_name", "slide_labels", "patient_split",
    "generate", "is_complete", "ensure_dataset", "generate_unlabeled", "preview", "main",
]

if __name__ == "__main__":
    sys.exit(main())
