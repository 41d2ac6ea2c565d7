"""Every image file checked once before a dataset is built, so a bad file is a :class:`DataError`
naming it, never a bare TensorFlow error half-way through an epoch. Verdicts are remembered (keyed by
path, size and modification time) so reruns skip the work."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf
from PIL import Image

from ird_tf.errors import DataError
from ird_tf.files import write_text

logger = logging.getLogger(__name__)

#: Formats decoded by TensorFlow's own decoders; anything else PIL opens (TIFF, WebP...) goes through PIL.
TF_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP")
_MODES_OK = ("1", "L", "P", "RGB", "RGBA")
_CHECKS_FILE = "image_checks.json"
_CHECKS_VERSION = 1
_SHOW = 5  # file names quoted in an error message


@dataclass(frozen=True)
class ImageCheck:
    """Verdict of :func:`check_images` for one file (``error`` is None when it decodes)."""

    path: str
    error: str | None
    format: str = ""
    height: int = 0
    width: int = 0


def check_images(
    paths: Sequence[str], *, workers: int | None = None, cache_dir: str | os.PathLike | None = None
) -> list[ImageCheck]:
    """Decodes every file once, in a thread pool, with the decoder the pipeline uses (JPEG at 1/8
    scale: the whole entropy-coded stream is still read) and checks its channels and bit depth.

    Missing files raise a :class:`DataError` naming them. Verdicts are remembered in
    ``cache_dir/image_checks.json`` when ``cache_dir`` is given.
    """
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{len(missing)} of {len(paths)} image file(s) do not exist: {_names(missing)}")
    stats = [os.stat(p) for p in paths]
    keys = [f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}" for p, st in zip(paths, stats, strict=True)]
    known = _load_checks(cache_dir)
    todo = [i for i, k in enumerate(keys) if k not in known]
    if todo:
        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, check in zip(todo, pool.map(_check_one, [paths[i] for i in todo]), strict=True):
                known[keys[i]] = [check.error, check.format, check.height, check.width]
        _save_checks(cache_dir, known)
    return [ImageCheck(p, *known[k]) for p, k in zip(paths, keys, strict=True)]


def _check_one(path: str) -> ImageCheck:
    try:
        with Image.open(path) as im:
            fmt, (width, height) = im.format or "", im.size
            problem = _unsupported(im, path)
            if problem:
                return ImageCheck(path, problem, fmt, height, width)
            if fmt not in TF_FORMATS:
                im.convert("RGB").load()
                return ImageCheck(path, None, fmt, height, width)
        raw = tf.io.read_file(path)
        if fmt in ("JPEG", "MPO"):
            img = tf.io.decode_jpeg(raw, channels=3, ratio=8)
        else:
            img = tf.io.decode_image(raw, channels=3, expand_animations=False)
            if tuple(img.shape[:2]) != (height, width):
                return ImageCheck(path, f"decodes to {img.shape} but its header says {height}x{width}", fmt)
        del img
        return ImageCheck(path, None, fmt, height, width)
    except Exception as e:  # any decoder failure is a verdict, reported with the file name
        text = re.sub(r"\{\{function_node[^}]*\}\}|\[Op:.*$", "", " ".join(str(e).split())).strip()
        return ImageCheck(path, f"{type(e).__name__}: {text[:160]}".rstrip(": "))


def _unsupported(im: Image.Image, path: str) -> str | None:
    """Why this image is not 8-bit grey/RGB/RGBA (or palette), else None."""
    if im.mode == "LA" or im.mode == "PA":
        return f"has 2 channels (mode {im.mode}); expected grey, RGB or RGBA"
    bits = _bits_per_sample(im, path)
    if bits > 8 or im.mode.startswith(("I", "F")):
        return f"has {bits if bits > 8 else 'more than 8'}-bit samples (mode {im.mode}); expected 8-bit"
    if im.mode not in _MODES_OK:
        return f"has unsupported mode {im.mode}; expected grey, RGB or RGBA"
    return None


def _bits_per_sample(im: Image.Image, path: str) -> int:
    if im.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(26)
        return header[24] if len(header) == 26 else 8  # IHDR bit depth
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)
        return max(bits) if isinstance(bits, tuple) else int(bits)
    return 8


def apply_verdicts(checks: list[ImageCheck], skip_corrupt: bool) -> list[int]:
    bad = [c for c in checks if c.error]
    if bad and not skip_corrupt:
        shown = "; ".join(f"{c.path} ({c.error})" for c in bad[:_SHOW])
        more = f"; ... and {len(bad) - _SHOW} more" if len(bad) > _SHOW else ""
        raise DataError(
            f"{len(bad)} of {len(checks)} image file(s) cannot be used: {shown}{more}. "
            "Fix or remove them, or pass skip_corrupt=True to drop them."
        )
    if bad:
        logger.warning(
            "skipped %d of %d corrupt image file(s): %s", len(bad), len(checks), _names([c.path for c in bad])
        )
    keep = [i for i, c in enumerate(checks) if not c.error]
    if not keep:
        raise DataError(f"none of the {len(checks)} image file(s) can be used; all are unreadable: "
                        f"{_names([c.path for c in bad])}")
    return keep


def _load_checks(cache_dir) -> dict:
    if cache_dir is None:
        return {}
    path = Path(cache_dir) / _CHECKS_FILE
    try:
        data = json.loads(path.read_text())
        return data["checks"] if data.get("version") == _CHECKS_VERSION else {}
    except (OSError, ValueError, KeyError, AttributeError):
        return {}


def _save_checks(cache_dir, checks: dict) -> None:
    if cache_dir is None:
        return
    write_text(Path(cache_dir) / _CHECKS_FILE, json.dumps({"version": _CHECKS_VERSION, "checks": checks}))


def _names(paths: Sequence[str]) -> str:
    more = f", ... and {len(paths) - _SHOW} more" if len(paths) > _SHOW else ""
    return ", ".join(str(p) for p in paths[:_SHOW]) + more


__all__ = ["ImageCheck", "TF_FORMATS", "apply_verdicts", "check_images"]
