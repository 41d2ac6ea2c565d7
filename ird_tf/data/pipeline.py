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
import logging
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from ird_tf.config import MODES, AugmentConfig, ConfigError
from ird_tf.data.augment import geometric, photometric, random_uniforms
from ird_tf.data.checks import TF_FORMATS, ImageCheck, apply_verdicts, check_images
from ird_tf.data.decode import decoder
from ird_tf.data.view import InputView
from ird_tf.errors import DataError

logger = logging.getLogger(__name__)


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Batches that cover ``n_rows`` once (ceil): the epoch length of an endless training dataset."""
    if n_rows < 1 or batch_size < 1:
        raise ConfigError(f"steps_per_epoch: n_rows={n_rows} and batch_size={batch_size} must be >= 1")
    return math.ceil(n_rows / batch_size)


@dataclass(frozen=True)
class _Files:
    """A checked table's files, ready for tf.data: paths, labels, which go through PIL, the decoder,
    and whether the decoded uint8 is cached in memory."""

    paths: np.ndarray
    labels: np.ndarray
    use_pil: np.ndarray
    decode: object
    cached: bool

    def source(self, idx: np.ndarray) -> tf.data.Dataset:
        ds = tf.data.Dataset.from_tensor_slices((self.paths[idx], self.labels[idx], self.use_pil[idx]))
        return ds.map(self.decode, num_parallel_calls=tf.data.AUTOTUNE).cache() if self.cached else ds

    def decoded(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds if self.cached else ds.map(self.decode, num_parallel_calls=tf.data.AUTOTUNE)


def _files(table: pd.DataFrame, view: InputView, batch_size: int, *, labeled: bool, num_classes: int | None,
           cache: bool, cache_bytes: int, skip_corrupt: bool, cache_dir, check_workers: int | None
           ) -> _Files:
    """Checks the settings, the table and every file (:mod:`ird_tf.data.checks`), then says how each
    file is decoded and whether it fits the cache budget."""
    size = view.image_size
    _check_settings(size, view.factor, view.mode, batch_size)
    table = _check_table(table, labeled, num_classes)
    checks: list[ImageCheck] = check_images([str(p) for p in table["path"]], workers=check_workers,
                                            cache_dir=cache_dir)
    keep = apply_verdicts(checks, skip_corrupt)
    table, checks = table.iloc[keep], [checks[i] for i in keep]
    use_pil = np.array([c.format not in TF_FORMATS for c in checks])
    off_size = sum((c.height, c.width) != (size, size) for c in checks)
    if off_size:
        logger.warning("%d of %d image(s) are not %dx%d px and are area-resized to it (changes their "
                       "magnification)", off_size, len(checks), size, size)
    cached = cache and len(table) * size * size * 3 <= cache_bytes
    if cache and not cached:
        logger.info("not caching: %d images of %d px exceed cache_bytes=%d", len(table), size, cache_bytes)
    labels = table["label"].to_numpy(np.int32) if labeled else np.zeros(len(table), np.int32)
    return _Files(np.array([c.path for c in checks]), labels, use_pil,
                  decoder(size, any_pil=bool(use_pil.any()), resize=off_size > 0), cached)


def evaluation_dataset(
    table: pd.DataFrame, view: InputView, *, batch_size: int, labeled: bool = True,
    num_classes: int | None = None, cache: bool = True, cache_bytes: int = 2**31, skip_corrupt: bool = False,
    cache_dir: str | os.PathLike | None = None, check_workers: int | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """One pass over ``table`` in its order, no augmentation: ``({"hr", "lr"}, label)`` batches in
    [0, 1] (the dict alone with ``labeled=False``); ``lr`` is ``view.from_high(hr)``. The last batch is
    kept unless ``drop_remainder``. ``cache``: keep decoded uint8 in memory when n·S·S·3 bytes <=
    ``cache_bytes``; ``cache_dir``: where file verdicts are remembered; ``skip_corrupt``: drop
    undecodable files (counted) instead of raising."""
    files = _files(table, view, batch_size, labeled=labeled, num_classes=num_classes, cache=cache,
                   cache_bytes=cache_bytes, skip_corrupt=skip_corrupt, cache_dir=cache_dir,
                   check_workers=check_workers)
    ds = files.decoded(files.source(np.arange(len(files.paths))))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)

    def batch(img, y):
        hr = tf.cast(img, tf.float32) / 255.0
        views = {"hr": hr, "lr": view.from_high(hr)}
        return (views, y) if labeled else views

    return _prefetched(ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE))


def _prefetched(ds: tf.data.Dataset) -> tf.data.Dataset:
    """The end of every pipeline here: prefetch, and tf.data's autotuning thread switched off. That thread
    (one per iterator) sleeps between its optimisations for up to a minute, and destroying the iterator
    waits for the sleep to end: measured in the main sweep, the main thread blocked 10 to 36 s at the end
    of about one run in four, in ``RootDataset::Iterator``'s destructor, while the ``tf_data_model``
    thread waited in ``Model::OptimizeLoop`` (TF 2.21). Without it, a parallel map runs as many calls as
    the machine has cores and the prefetch buffer sizes itself."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def training_dataset(
    table: pd.DataFrame, view: InputView, *, batch_size: int, augment: AugmentConfig | None = None,
    seed: int = 0, class_balanced: bool = False, labeled: bool = True, num_classes: int | None = None,
    cache: bool = True, cache_bytes: int = 2**31, skip_corrupt: bool = False,
    cache_dir: str | os.PathLike | None = None, check_workers: int | None = None, jit: bool = True,
    start_batch: int = 0,
) -> tf.data.Dataset:
    """Endless augmented batches (use :func:`steps_per_epoch`): seeded shuffle, class balance (equal
    weights over the classes present, labeled tables only), fixed batch size. The augmentation
    (``augment``; None = defaults) is applied once to the high-magnification image; ``lr`` is
    ``view.from_high`` of the augmented image. ``jit``: compile the augmentation with XLA (see
    ``RunConfig.augment_jit``). Cache and checks as :func:`evaluation_dataset`.

    ``start_batch``: begin the stream there, batch for batch what the stream from 0 yields after that
    many batches (a resumed run sees the data an uninterrupted one would); the skipped part costs
    only the shuffles of image indices, nothing is decoded or augmented."""
    files = _files(table, view, batch_size, labeled=labeled, num_classes=num_classes, cache=cache,
                   cache_bytes=cache_bytes, skip_corrupt=skip_corrupt, cache_dir=cache_dir,
                   check_workers=check_workers)
    labels = files.labels
    groups = [np.arange(len(labels))]
    if class_balanced and labeled:
        present = np.unique(labels)
        groups = [np.flatnonzero(labels == c) for c in present]
        absent = sorted(set(range(num_classes or 0)) - set(present.tolist()))
        if absent:
            logger.warning("class-balanced sampling: classes %s have no images and are never drawn", absent)
    streams = [
        files.source(idx).shuffle(len(idx), seed=_mix(seed, k), reshuffle_each_iteration=True).repeat()
        for k, idx in enumerate(groups)
    ]
    ds = streams[0]
    if len(streams) > 1:
        ds = tf.data.Dataset.sample_from_datasets(streams, [1.0 / len(streams)] * len(streams), seed=seed)
    skipped = int(start_batch) * batch_size
    ds = files.decoded(ds.skip(skipped))
    augmenter = _augmenter(_key(augment or AugmentConfig()), jit)
    base = tf.constant(seed, tf.int64)

    def with_uniforms(i, element):
        img, y = element
        return img, y, random_uniforms(tf.stack([base, i]))

    def batch(img, y, u):
        hr = augmenter(img, u)
        views = {"hr": hr, "lr": view.from_high(hr)}
        return (views, y) if labeled else views

    ds = ds.enumerate(start=skipped).map(with_uniforms, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=True)
    return _prefetched(ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE))


def make_dataset(table: pd.DataFrame, *, image_size: int, factor: int, mode: str = "upsampled",
                 training: bool, drop_remainder: bool = False, augment: AugmentConfig | None = None,
                 seed: int = 0, class_balanced: bool = False, jit: bool = True, **common) -> tf.data.Dataset:
    """:func:`training_dataset` or :func:`evaluation_dataset` for the Student view of ``factor`` and
    ``mode`` (``lr``; ``hr`` is the patch itself), by plain arguments."""
    _check_settings(image_size, factor, mode, common.get("batch_size", 1))
    view = InputView("lr", image_size, factor, mode)
    if training:
        return training_dataset(table, view, augment=augment, seed=seed, class_balanced=class_balanced,
                                jit=jit, **common)
    return evaluation_dataset(table, view, drop_remainder=drop_remainder, **common)


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
                f"{bad[:5].tolist()} (e.g. {first['label']!r} for {first['path']})"
            )
    return table.reset_index(drop=True)


def _mix(seed: int, k: int) -> int:
    """A distinct, reproducible shuffle seed per class stream."""
    return int((seed * 1_000_003 + k * 7919) % (2**31 - 1))


__all__ = ["ImageCheck", "TF_FORMATS", "check_images", "evaluation_dataset", "make_dataset",
           "steps_per_epoch", "training_dataset"]
