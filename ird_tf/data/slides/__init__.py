"""Whole slides: reading (OpenSlide or TiffSlide), level choice, tissue detection and the patch grid.

- :mod:`~ird_tf.data.slides.backends`: :func:`open_slide` -> :class:`Slide` (levels, µm/px, ``read``
  composited on white);
- :mod:`~ird_tf.data.slides.levels`: :func:`choose_level` (coarsest level at or finer than a target
  µm/px, 5 % tolerance) and :func:`reduce`;
- :mod:`~ird_tf.data.slides.tissue`: :func:`detect_tissue` (saturation, Otsu) on a low level;
- :mod:`~ird_tf.data.slides.grid`: :func:`tile_grid` (the Teacher's grid) and :func:`iter_regions`
  (patches read in large regions, streaming).
"""

from ird_tf.data.slides.backends import BACKENDS, Slide, default_backend, installed_backends, open_slide
from ird_tf.data.slides.grid import Tile, iter_regions, tile_grid
from ird_tf.data.slides.levels import TOLERANCE, ReadPlan, choose_level, reduce
from ird_tf.data.slides.tissue import TissueMask, detect_tissue, otsu, saturation

__all__ = [
    "BACKENDS", "TOLERANCE", "ReadPlan", "Slide", "Tile", "TissueMask", "choose_level", "default_backend",
    "detect_tissue", "installed_backends", "iter_regions", "open_slide", "otsu", "reduce", "saturation",
    "tile_grid",
]
