"""A synthetic whole slide: a pyramidal tiled TIFF of benchmark-v1 tissue with regions of known
Gleason pattern, its ground truth, and glass around the tissue.

How it is made: the slide is a grid of cells of ``cell`` px at level 0 (default 128 px at 10x, that
is one benchmark-v1 patch, a 128 µm field). A smooth random field decides which cells hold tissue
(about ``tissue`` of the slide, in one or a few pieces); inside the tissue a second smooth field cuts
contiguous regions of pattern NC, G3, G4 and G5 in the proportions ``grades``. Each tissue cell shows a
patch drawn by :func:`ird_tf.data.synthetic.render.render_patch` with the benchmark-v1 settings and the
slide's stain (a small library of ``variants`` patches per class, each placed in one of its 8
flips/rotations), so a tile of the 10x grid is exactly a benchmark patch; the other cells are glass
(the slide's illumination and sensor noise, no stain). Reduced levels are the block mean of level 0
(cells are multiples of 32 px, so every level is the exact mean of the level-0 pixels, rounded once).

Files for ``--out X.tiff``:

- ``X.tiff``: BigTIFF, levels with downsamples 1, 2, 4, 8, 16, 32 as pages of the main chain, tiles of
  256 x 256, JPEG (or deflate: lossless), reduced levels flagged ``subfiletype=1`` (OpenSlide's
  generic-tiff needs that flag), resolution tags in µm/px (``resolutionunit=CENTIMETER``) so OpenSlide
  reports ``openslide.mpp-x`` and TiffSlide ``tiffslide.mpp-x``.
- ``X.mask.png``: the ground truth, one pixel per cell: 0 benign (NC), 3/4/5 Gleason pattern, 255 glass.
- ``X.truth.json``: size, µm/px, cell size, the number of cells of each class (from which
  :mod:`ird_tf.evaluation.gleason` gives the expected slide grading) and the class of each cell
  (``labels``, rows of cells, -1 glass).

Memory stays small whatever the slide size: tiles are composed one strip at a time from the library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ird_tf.config import ConfigError, SyntheticConfig
from ird_tf.data.synthetic.noise import noise, white_noise
from ird_tf.data.synthetic.render import CLASSES, MASK_VALUES, render_patch
from ird_tf.data.synthetic.stain import beer_lambert, random_style

DOWNSAMPLES = (1, 2, 4, 8, 16, 32)
TILE = 256
GLASS = 255  # mask value outside the tissue
COMPRESSIONS = ("jpeg", "deflate")


@dataclass(frozen=True)
class SlideSpec:
    """Settings of one synthetic slide. ``grades``: share of the tissue cells of NC, G3, G4, G5."""

    width: int = 4096
    height: int = 4096
    mpp: float = 1.0  # µm/px at level 0 (10x)
    cell: int = 128
    tissue: float = 0.5
    grades: tuple[float, float, float, float] = (0.55, 0.25, 0.15, 0.05)
    variants: int = 3
    seed: int = 0
    compression: str = "jpeg"
    quality: int = 90
    patch: SyntheticConfig = field(default_factory=SyntheticConfig)

    def check(self) -> None:
        if self.cell < 32 or self.cell % DOWNSAMPLES[-1]:
            raise ConfigError(f"slide cell={self.cell!r}: expected a multiple of {DOWNSAMPLES[-1]} px")
        if self.width < self.cell or self.height < self.cell:
            raise ConfigError(f"slide size {self.width}x{self.height}: expected at least one cell "
                              f"({self.cell} px) each way")
        if not 0 < self.tissue <= 1:
            raise ConfigError(f"slide tissue={self.tissue!r}: expected a fraction in (0, 1]")
        if len(self.grades) != 4 or min(self.grades) < 0 or sum(self.grades) <= 0:
            raise ConfigError(f"slide grades={self.grades!r}: expected 4 shares >= 0 (NC, G3, G4, G5)")
        if self.mpp <= 0:
            raise ConfigError(f"slide mpp={self.mpp!r}: expected µm/px > 0")
        if self.variants < 1:
            raise ConfigError(f"slide variants={self.variants!r}: expected >= 1")
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"slide compression={self.compression!r}: expected one of {list(COMPRESSIONS)}")


def _smooth(rng: np.random.Generator, rows: int, cols: int, scale: float) -> np.ndarray:
    n = max(rows, cols)
    return noise(rng, n, max(scale, 1.0))[:rows, :cols]


def cell_labels(spec: SlideSpec) -> np.ndarray:
    """Class index of every cell (rows x cols): -1 glass, 0..3 NC, G3, G4, G5."""
    rows, cols = spec.height // spec.cell, spec.width // spec.cell
    rng = np.random.default_rng([spec.seed, 1])
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    centre = ((yy - rows / 2) / max(rows, 1)) ** 2 + ((xx - cols / 2) / max(cols, 1)) ** 2
    field_ = _smooth(rng, rows, cols, max(rows, cols) / 4) - 6.0 * centre
    n_tissue = max(1, int(round(spec.tissue * rows * cols)))
    order = np.argsort(-field_.ravel(), kind="stable")
    labels = np.full(rows * cols, -1, np.int8)
    tissue = order[:n_tissue]
    grade_field = _smooth(rng, rows, cols, max(rows, cols) / 6).ravel()[tissue]
    share = np.asarray(spec.grades, np.float64) / sum(spec.grades)
    counts = np.floor(share * n_tissue).astype(int)
    counts[0] += n_tissue - counts.sum()
    # the lowest values of the grade field get G5, then G4, G3; NC takes the rest (contiguous bands)
    ranked = tissue[np.argsort(grade_field, kind="stable")]
    start = 0
    for c in (3, 2, 1, 0):
        labels[ranked[start:start + counts[c]]] = c
        start += counts[c]
    return labels.reshape(rows, cols)


def _library(spec: SlideSpec) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """``variants`` benchmark patches per class (RGB uint8, cell x cell) and one glass cell."""
    cfg = replace(spec.patch, patch_size=spec.cell, magnification=10.0 / spec.mpp)
    style = random_style(np.random.default_rng([spec.seed, 2]))
    lib = [[render_patch(np.random.default_rng([spec.seed, 3, c, v]), c, cfg, style=style)[0]
            for v in range(spec.variants)] for c in range(len(CLASSES))]
    zero = np.zeros((spec.cell, spec.cell), np.float32)
    glass = beer_lambert(zero, zero, style, white_noise(np.random.default_rng([spec.seed, 4]),
                                                        (3, spec.cell, spec.cell)))
    return lib, glass


def _block_mean_u8(image: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return image
    h, w = image.shape[0] // f, image.shape[1] // f
    s = image[: h * f, : w * f].reshape(h, f, w, f, 3).sum(axis=(1, 3), dtype=np.uint32)
    return ((s + (f * f) // 2) // (f * f)).astype(np.uint8)


def _d4(image: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of a square image."""
    out = np.rot90(image, k % 4)
    return out[:, ::-1] if k >= 4 else out


class _Mosaic:
    """Composes any level of the slide, strip by strip, from the library (nothing else in memory)."""

    def __init__(self, spec: SlideSpec, labels: np.ndarray):
        self.spec, self.labels = spec, labels
        rng = np.random.default_rng([spec.seed, 5])
        self.variant = rng.integers(0, spec.variants, labels.shape)
        self.turn = rng.integers(0, 8, labels.shape)
        lib, glass = _library(spec)
        self.cells = {f: ([[_block_mean_u8(p, f) for p in per] for per in lib], _block_mean_u8(glass, f))
                      for f in DOWNSAMPLES}

    def level_shape(self, f: int) -> tuple[int, int]:
        return self.spec.height // f, self.spec.width // f

    def strip(self, f: int, y0: int, y1: int) -> np.ndarray:
        """Rows y0:y1 of the level with downsample ``f``, full width."""
        h, w = self.level_shape(f)
        c = self.spec.cell // f
        lib, glass = self.cells[f]
        out = np.empty((y1 - y0, w, 3), np.uint8)
        rows, cols = self.labels.shape
        for r in range(y0 // c, min(-(-y1 // c), -(-h // c))):
            top, bottom = max(r * c, y0), min((r + 1) * c, y1)
            for q in range(-(-w // c)):
                left, right = q * c, min((q + 1) * c, w)
                inside = r < rows and q < cols
                label = self.labels[r, q] if inside else -1
                if label < 0:
                    img = glass if inside else _d4(glass, (r + q) % 8)
                else:
                    img = _d4(lib[label][self.variant[r, q]], int(self.turn[r, q]))
                out[top - y0:bottom - y0, left:right] = img[top - r * c:bottom - r * c, : right - left]
        return out

    def tiles(self, f: int):
        h, w = self.level_shape(f)
        for y in range(0, h, TILE):
            strip = self.strip(f, y, min(y + TILE, h))
            for x in range(0, w, TILE):
                tile = np.full((TILE, TILE, 3), 255, np.uint8)
                part = strip[:, x:x + TILE]
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile


def write_slide(out: str | Path, spec: SlideSpec | None = None) -> dict:
    """Writes ``out`` (the TIFF), ``<stem>.mask.png`` and ``<stem>.truth.json``; returns the truth."""
    import tifffile
    from PIL import Image

    from ird_tf.files import atomic_path, write_json

    spec = spec or SlideSpec()
    spec.check()
    out = Path(out)
    labels = cell_labels(spec)
    mosaic = _Mosaic(spec, labels)
    compression = ("jpeg", {"level": spec.quality}) if spec.compression == "jpeg" else ("zlib", {"level": 6})
    with atomic_path(out) as tmp, tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for f in DOWNSAMPLES:
            h, w = mosaic.level_shape(f)
            if min(h, w) < 1:
                break
            res = 1e4 / (spec.mpp * f)
            tw.write(mosaic.tiles(f), shape=(h, w, 3), dtype=np.uint8, tile=(TILE, TILE),
                     photometric="rgb", compression=compression[0], compressionargs=compression[1],
                     subfiletype=1 if f > 1 else 0, resolution=(res, res), resolutionunit="CENTIMETER",
                     description=None if f > 1 else f"ird_tf synthetic slide; mpp={spec.mpp:g}",
                     metadata=None)
    mask = np.where(labels >= 0, np.asarray(MASK_VALUES, np.uint8)[np.maximum(labels, 0)], GLASS)
    mask_path = out.with_name(f"{out.stem}.mask.png")
    with atomic_path(mask_path) as tmp:
        Image.fromarray(mask.astype(np.uint8)).save(tmp, format="PNG")
    counts = {name: int((labels == c).sum()) for c, name in enumerate(CLASSES)}
    truth = {
        "slide": out.name, "width": spec.width, "height": spec.height, "mpp": spec.mpp,
        "cell": spec.cell, "downsamples": [f for f in DOWNSAMPLES if min(mosaic.level_shape(f)) >= 1],
        "classes": list(CLASSES), "mask": mask_path.name, "mask_values": dict(zip(CLASSES, MASK_VALUES,
                                                                                  strict=True)),
        "mask_downsample": spec.cell, "counts": counts, "tissue_cells": int((labels >= 0).sum()),
        "seed": spec.seed, "compression": spec.compression,
        "labels": labels.tolist(),
    }
    write_json(out.with_name(f"{out.stem}.truth.json"), truth)
    return truth


def cell_patch(spec: SlideSpec, row: int, col: int) -> np.ndarray:
    """The level-0 pixels of cell (row, col) as written (before compression)."""
    labels = cell_labels(spec)
    c = spec.cell
    return _Mosaic(spec, labels).strip(1, row * c, (row + 1) * c)[:, col * c:(col + 1) * c]


def read_truth(slide: str | Path) -> dict:
    slide = Path(slide)
    return json.loads(slide.with_name(f"{slide.stem}.truth.json").read_text())


__all__ = ["COMPRESSIONS", "DOWNSAMPLES", "GLASS", "SlideSpec", "cell_labels", "cell_patch", "read_truth",
           "write_slide"]
