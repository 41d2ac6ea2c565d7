"""Multi-resolution tf.data pipeline: high- and low-resolution views of the same (augmented) patch.

Files are streamed from disk and decoded to uint8; only decoded uint8 is cached, and only when it fits
``cache_bytes``. Before the dataset is built every file is checked once with the decoder the pipeline
will use (:func:`check_images`), so a bad file is a :class:`DataError` naming it, never a bare
TensorFlow error half-way through an epoch.

Per batch, the hot path is: uint8 → [0, 1] float32 → augmentation (training; XLA-compiled, with
per-image random numbers drawn from ``(seed, element index)``) = ``hr`` → block mean
over ``factor × factor`` pixels (``avg_pool2d``, exactly an area downsampling) = ``lr`` in "native"
mode, bilinearly resized back to ``image_size`` in "upsampled" mode (the paper's setting).

Images whose size differs from ``image_size`` are area-resized to it when decoded. That changes their
effective magnification (a 1024 px 10x patch resized to 512 px is a 5x patch): give the pipeline
patches at the teacher's magnification.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image

from ird_tf.config import MODES, AugmentConfig, ConfigError
from ird_tf.data.augment import geometric, photometric, random_uniforms
from ird_tf.data.view import InputView
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


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Batches that cover ``n_rows`` once (ceil): the epoch length of an endless training dataset."""
    if n_rows < 1 or batch_size < 1:
        raise ConfigError(f"steps_per_epoch: n_rows={n_rows} and batch_size={batch_size} must be >= 1")
    return math.ceil(n_rows / batch_size)


def make_dataset(
    table: pd.DataFrame,
    *,
    image_size: int,
    factor: int,
    mode: str = "upsampled",
    batch_size: int,
    training: bool,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    class_balanced: bool = False,
    cache: bool = True,
    skip_corrupt: bool = False,
    labeled: bool = True,
    num_classes: int | None = None,
    drop_remainder: bool = False,
    cache_bytes: int = 2**31,
    cache_dir: str | os.PathLike | None = None,
    check_workers: int | None = None,
    jit: bool = True,
) -> tf.data.Dataset:
    """Dataset of ``({"hr": float32[B,S,S,3], "lr": float32[B,s,s,3]}, label int32[B])`` in [0, 1].

    S = ``image_size``; s = S ("upsampled") or S // factor ("native"); ``labeled=False`` yields the
    dict only. ``training=True``: augmentation (``augment``; None = defaults), seeded shuffle, class
    balance (equal weights over the classes present, labeled tables only), fixed batch size, and the
    dataset repeats forever (use :func:`steps_per_epoch`). ``training=False``: one pass in table order,
    no augmentation, last batch kept unless ``drop_remainder``.

    ``cache``: keep decoded uint8 in memory when n·S·S·3 bytes <= ``cache_bytes`` (a budget per
    dataset), else stream every epoch from disk. ``cache_dir``: where file verdicts are remembered
    (keyed by path, size and mtime), so reruns skip the check.
    ``skip_corrupt``: drop undecodable files (logged with their count) instead of raising.
    ``jit``: compile the training augmentation with XLA (several times faster on CPU).
    """
    _check_settings(image_size, factor, mode, batch_size)
    view = InputView("lr", image_size, factor, mode)
    table = _check_table(table, labeled, num_classes)
    paths = [str(p) for p in table["path"]]
    checks = check_images(paths, workers=check_workers, cache_dir=cache_dir)
    keep = _apply_verdicts(checks, skip_corrupt)
    table, checks = table.iloc[keep], [checks[i] for i in keep]
    paths = np.array([c.path for c in checks])

    use_pil = np.array([c.format not in TF_FORMATS for c in checks])
    resize = any((c.height, c.width) != (image_size, image_size) for c in checks)
    if resize:
        n = sum((c.height, c.width) != (image_size, image_size) for c in checks)
        logger.warning(
            "%d of %d image(s) are not %dx%d px and are area-resized to it (changes their magnification)",
            n,
            len(checks),
            image_size,
            image_size,
        )
    decode = _decoder(image_size, any_pil=bool(use_pil.any()), resize=resize)
    labels = table["label"].to_numpy(np.int32) if labeled else np.zeros(len(table), np.int32)
    cached = cache and len(table) * image_size * image_size * 3 <= cache_bytes
    if cache and not cached:
        logger.info(
            "not caching: %d images of %d px exceed cache_bytes=%d", len(table), image_size, cache_bytes
        )

    def source(idx: np.ndarray) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((paths[idx], labels[idx], use_pil[idx]))
        if cached:
            ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()
        return ds

    if not training:
        ds = source(np.arange(len(table)))
        if not cached:
            ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)

        def eval_batch(img, y):
            hr = tf.cast(img, tf.float32) / 255.0
            views = {"hr": hr, "lr": view.from_high(hr)}
            return (views, y) if labeled else views

        ds = ds.map(eval_batch, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    groups = [np.arange(len(table))]
    if class_balanced and labeled:
        present = np.unique(labels)
        groups = [np.flatnonzero(labels == c) for c in present]
        absent = sorted(set(range(num_classes or 0)) - set(present.tolist()))
        if absent:
            logger.warning("class-balanced sampling: classes %s have no images and are never drawn", absent)
    streams = [
        source(idx).shuffle(len(idx), seed=_mix(seed, k), reshuffle_each_iteration=True).repeat()
        for k, idx in enumerate(groups)
    ]
    ds = streams[0]
    if len(streams) > 1:
        ds = tf.data.Dataset.sample_from_datasets(streams, [1.0 / len(streams)] * len(streams), seed=seed)
    if not cached:
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    augmenter = _augmenter(_key(augment or AugmentConfig()), jit)
    base = tf.constant(seed, tf.int64)

    def with_uniforms(i, element):
        img, y = element
        return img, y, random_uniforms(tf.stack([base, i]))

    def train_batch(img, y, u):
        hr = augmenter(img, u)
        views = {"hr": hr, "lr": view.from_high(hr)}
        return (views, y) if labeled else views

    ds = ds.enumerate().map(with_uniforms, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(train_batch, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=16)
def _augmenter(cfg_key: tuple, jit: bool):
    """(uint8 batch, uniforms) → augmented float32 batch, built once per setting and shared by every
    dataset: with ``jit`` the warp and the photometric part are two XLA-compiled functions (compiled
    once per batch shape; then several times faster on CPU). Two, not one: fused together, XLA
    recomputes the warp's gathers for every use of its output. The low-resolution view stays outside:
    XLA's bilinear resize is slower than TensorFlow's."""
    cfg = AugmentConfig(**dict(cfg_key))
    if not cfg.enabled:
        return lambda img, u: tf.cast(img, tf.float32) / 255.0
    geo = tf.function(lambda img, u: geometric(tf.cast(img, tf.float32) / 255.0, u, cfg), jit_compile=jit)
    photo = tf.function(lambda x, u: photometric(x, u, cfg), jit_compile=jit)
    return lambda img, u: photo(geo(img, u), u)


def _key(cfg: AugmentConfig) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in asdict(cfg).items())


def _decoder(size: int, *, any_pil: bool, resize: bool):
    """(path, label, use_pil) → (uint8[S, S, 3], label). Mode checks were done by check_images."""

    def tf_decode(path):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.uint8, expand_animations=False)
        img.set_shape([None, None, 3])
        return img

    def pil_decode(path):
        img = tf.numpy_function(_read_pil, [path], tf.uint8, stateful=False)
        img.set_shape([None, None, 3])
        return img

    def to_size(img):
        resized = tf.image.resize(img, [size, size], method="area")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    def decode(path, label, use_pil):
        img = (
            tf.cond(use_pil, lambda: pil_decode(path), lambda: tf_decode(path))
            if any_pil
            else tf_decode(path)
        )
        if resize:
            same = tf.reduce_all(tf.shape(img)[:2] == size)
            img = tf.cond(same, lambda: img, lambda: to_size(img))
        return tf.ensure_shape(img, [size, size, 3]), label

    return decode


def _read_pil(path: bytes) -> np.ndarray:
    with Image.open(path.decode()) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


# ---------------------------------------------------------------------------------------- file checks
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


def _apply_verdicts(checks: list[ImageCheck], skip_corrupt: bool) -> list[int]:
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


# ----------------------------------------------------------------------------------------- settings
def _check_settings(image_size: int, factor: int, mode: str, batch_size: int) -> None:
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} is not accepted; expected one of {list(MODES)}")
    for name, value in (("image_size", image_size), ("factor", factor), ("batch_size", batch_size)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name}={value!r} is not accepted; expected an integer >= 1")
    if image_size % factor:
        raise ConfigError(f"image_size={image_size} is not divisible by factor={factor}")


def _check_table(table: pd.DataFrame, labeled: bool, num_classes: int | None) -> pd.DataFrame:
    need = ["path", "label"] if labeled else ["path"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise DataError(f"the table has no column(s) {missing}; expected {need} (got {list(table.columns)})")
    if len(table) == 0:
        raise DataError("the table of images is empty")
    if labeled:
        labels = pd.to_numeric(table["label"], errors="coerce")
        top = num_classes if num_classes is not None else np.inf
        bad = np.flatnonzero(labels.isna() | (labels < 0) | (labels >= top) | (labels % 1 != 0))
        if len(bad):
            first = table.iloc[bad[0]]
            raise DataError(
                f"{len(bad)} row(s) have a label that is not an integer in [0, {top}): rows "
                f"{bad[:_SHOW].tolist()} (e.g. {first['label']!r} for {first['path']})"
            )
    return table.reset_index(drop=True)


def _names(paths: Sequence[str]) -> str:
    more = f", ... and {len(paths) - _SHOW} more" if len(paths) > _SHOW else ""
    return ", ".join(str(p) for p in paths[:_SHOW]) + more


def _mix(seed: int, k: int) -> int:
    """A distinct, reproducible shuffle seed per class stream."""
    return int((seed * 1_000_003 + k * 7919) % (2**31 - 1))


__all__ = ["make_dataset", "steps_per_epoch", "check_images", "ImageCheck", "TF_FORMATS"]
