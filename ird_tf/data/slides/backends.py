"""Whole-slide readers behind one small interface: OpenSlide or TiffSlide, the same answers.

:func:`open_slide` returns a :class:`Slide`: its levels (size, downsample, µm/px) and
:meth:`Slide.read`, which returns RGB uint8 pixels of a rectangle of any level composited on white. The
part of a rectangle outside the slide is white too: each backend is asked only for the part inside
(OpenSlide answers transparent RGBA outside, which turns black after ``convert("RGB")``; TiffSlide pads
with black), and any transparency that a backend returns inside is composited on white.

Backends: ``openslide`` (``openslide-python`` + ``openslide-bin``), ``tiffslide`` (pure Python, reads
TIFF-based formats with ``tifffile`` and ``imagecodecs``). Default: the first of the two installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ird_tf.errors import ConfigError, DataError

BACKENDS = ("openslide", "tiffslide")
MPP_KEYS = ("openslide.mpp-x", "tiffslide.mpp-x", "aperio.MPP")


def installed_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def default_backend() -> str:
    found = installed_backends()
    if not found:
        raise ConfigError("no whole-slide reader is installed: pip install 'ird_tf[slide]' "
                          "(openslide-python + openslide-bin, or tiffslide + imagecodecs)")
    return found[0]


@dataclass(frozen=True)
class Level:
    index: int
    width: int
    height: int
    downsample: float


def _to_rgb(image) -> np.ndarray:
    """A PIL image or array (RGB or RGBA, not premultiplied) as RGB uint8 composited on white."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        if a[..., 3].min() == 255:  # opaque (the usual case): compositing would change nothing
            return np.ascontiguousarray(a[..., :3], dtype=np.uint8)
        alpha = a[..., 3:4].astype(np.uint16)
        rgb = (a[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)
    return np.ascontiguousarray(a[..., :3], dtype=np.uint8)


class Slide:
    """One open slide. ``mpp``: µm/px of level 0 from the file's metadata (None when absent)."""

    def __init__(self, path: str | Path, backend: str | None = None):
        self.path = Path(path)
        self.backend = backend or default_backend()
        if self.backend not in BACKENDS:
            raise ConfigError(f"slide backend={self.backend!r}: expected one of {list(BACKENDS)}")
        if self.backend not in installed_backends():
            raise ConfigError(f"slide backend={self.backend!r} is not installed (installed: "
                              f"{installed_backends() or 'none'}); pip install 'ird_tf[slide]'")
        if not self.path.is_file():
            raise DataError(f"slide {self.path} does not exist")
        try:
            if self.backend == "openslide":
                import openslide

                self._s = openslide.OpenSlide(str(self.path))
            else:
                import tiffslide

                self._s = tiffslide.TiffSlide(str(self.path))
        except Exception as e:  # each library raises its own types for unreadable files
            raise DataError(f"slide {self.path} cannot be opened with {self.backend}: "
                            f"{type(e).__name__}: {e}") from e
        s = self._s
        self.levels = [Level(i, int(w), int(h), float(d)) for i, ((w, h), d)
                       in enumerate(zip(s.level_dimensions, s.level_downsamples, strict=True))]
        self.properties = {str(k): str(v) for k, v in s.properties.items()}
        self.mpp = self._mpp()

    def _mpp(self) -> float | None:
        for key in MPP_KEYS:
            try:
                value = float(self.properties.get(key, ""))
            except ValueError:
                continue
            if value > 0:
                return value
        return None

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.levels[0].width, self.levels[0].height

    def read(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``height x width x 3`` uint8 pixels of ``level`` whose top-left corner is (x, y) in that
        level's own pixels; white outside the slide."""
        lv = self.levels[level]
        out = np.full((height, width, 3), 255, np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, lv.width), min(y + height, lv.height)
        if x1 <= x0 or y1 <= y0:
            return out
        # Backends take the corner in level-0 pixels and divide by the (inexact) downsample again:
        # rounding up lands TiffSlide exactly on (x0, y0) and leaves OpenSlide, which paints a
        # fractional offset by interpolation, less than 1/downsample of a pixel away.
        loc = (int(np.ceil(x0 * lv.downsample - 1e-6)), int(np.ceil(y0 * lv.downsample - 1e-6)))
        try:
            region = self._s.read_region(loc, level, (x1 - x0, y1 - y0))
        except Exception as e:
            raise DataError(f"slide {self.path}: reading level {level} at {loc} failed: "
                            f"{type(e).__name__}: {e}") from e
        out[y0 - y:y1 - y, x0 - x:x1 - x] = _to_rgb(region)
        return out

    def close(self) -> None:
        self._s.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_slide(path: str | Path, backend: str | None = None) -> Slide:
    return Slide(path, backend)


__all__ = ["BACKENDS", "Level", "Slide", "default_backend", "installed_backends", "open_slide"]
