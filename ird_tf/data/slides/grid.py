"""The patch grid of a slide and streaming its patches in large regions.

The grid is the 10x Teacher's: tiles of ``image_size`` px at the Teacher's µm/px, placed from the
slide's top-left corner every ``(1 - overlap)`` of a tile, in level-0 pixels. A Student at a lower
magnification reads the same rectangles (fewer pixels each), so the Teacher's and the Student's answers
are about the same tissue. A tile is kept when its tissue fraction reaches ``min_tissue``.

Reading: each backend call costs a fixed time (TiffSlide ~1.5-2 ms), so tiles are read in blocks: one
``read`` of a region of about ``region_px`` pixels of the chosen level per block, sliced into patches.
Only one region and the current batch are in memory, whatever the size of the slide.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ird_tf.data.slides.backends import Slide
from ird_tf.data.slides.levels import ReadPlan
from ird_tf.data.slides.tissue import TissueMask
from ird_tf.errors import ConfigError

REGION_PX = 2048


@dataclass(frozen=True)
class Tile:
    """One grid tile: row/column in the grid, level-0 corner and side (px), tissue fraction."""

    row: int
    col: int
    x: int
    y: int
    size: int
    tissue: float


def tile_grid(width: int, height: int, tile: float, overlap: float = 0.0, tissue: TissueMask | None = None,
              min_tissue: float = 0.5) -> list[Tile]:
    """Tiles of ``tile`` level-0 px over a ``width x height`` slide, step ``tile * (1 - overlap)``, whole
    tiles only, with at least ``min_tissue`` tissue (all tiles when ``tissue`` is None)."""
    if not 0 <= overlap < 1:
        raise ConfigError(f"overlap={overlap!r}: expected a fraction in [0, 1)")
    if tile < 1:
        raise ConfigError(f"tile={tile!r}: expected at least one level-0 pixel")
    step = tile * (1 - overlap)
    side = int(round(tile))
    rows = int(np.floor((height - tile) / step)) + 1 if height >= tile else 0
    cols = int(np.floor((width - tile) / step)) + 1 if width >= tile else 0
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    xs, ys = np.round(cc * step).astype(np.int64), np.round(rr * step).astype(np.int64)
    frac = np.ones(xs.size) if tissue is None else tissue.fractions(xs, ys, side)
    keep = np.flatnonzero(frac >= min_tissue)
    return [Tile(r, c, x, y, side, round(f, 4)) for r, c, x, y, f in
            zip(*(v[keep].tolist() for v in (rr, cc, xs, ys, np.asarray(frac, np.float64))), strict=True)]


def iter_regions(slide: Slide, tiles: Sequence[Tile], plan: ReadPlan, side: int,
                 region_px: int = REGION_PX) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yields (indices into ``tiles``, uint8 pixels ``[m, r, r, 3]``) per region, ``r`` =
    ``plan.read_side(side)`` px of level ``plan.level`` per tile (``reduce`` brings them to ``side``)."""
    ds = slide.levels[plan.level].downsample
    r = plan.read_side(side)
    per = max(1, region_px // max(r, 1))
    blocks: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tiles):
        blocks.setdefault((t.row // per, t.col // per), []).append(i)
    for key in sorted(blocks):
        idx = blocks[key]
        xs = [tiles[i].x / ds for i in idx]
        ys = [tiles[i].y / ds for i in idx]
        bx, by = int(np.floor(min(xs))), int(np.floor(min(ys)))
        bw = int(round(max(xs) - bx)) + r + 1
        bh = int(round(max(ys) - by)) + r + 1
        region = slide.read(plan.level, bx, by, bw, bh)
        # every tile's r x r window of the region in one gather (round() halves to even, as np.rint)
        ox = np.rint(np.asarray(xs) - bx).astype(np.int64)
        oy = np.rint(np.asarray(ys) - by).astype(np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(region, (r, r), axis=(0, 1))
        yield idx, np.ascontiguousarray(windows[oy, ox].transpose(0, 2, 3, 1))


__all__ = ["REGION_PX", "Tile", "iter_regions", "tile_grid"]
