"""What every task needs before it trains: the process runtime, the labelled splits and their datasets."""

from __future__ import annotations

from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.data.view import InputView
from ird_tf.runs.results import SPLITS


def setup_runtime(cfg: ExperimentConfig):
    """Devices, strategy, seed, precision and XLA, in the order TensorFlow needs; returns the strategy."""
    import tensorflow as tf

    from ird_tf.training.runtime import configure_cpu_devices, make_strategy, set_jit, set_precision, set_seed

    if cfg.run.strategy == "mirrored" and not tf.config.list_physical_devices("GPU"):
        configure_cpu_devices(2)
    strategy = make_strategy(cfg.run.strategy)
    set_seed(cfg.run.seed)
    set_precision(cfg.run.precision)
    set_jit(cfg.run.jit)
    return strategy


def load_splits(cfg: ExperimentConfig):
    """The labeled train/val/test tables of the configured source (synthetic: generated on first use)."""
    from ird_tf.data.readers import read_class_folders, read_sicap
    from ird_tf.data.synthetic import ensure_dataset

    d = cfg.data
    if d.source == "synthetic":
        root = ensure_dataset(Path(d.cache_dir), d.synthetic)
        return read_sicap(root, d.fold)
    if d.source == "sicap":
        return read_sicap(d.root, d.fold, skip_missing=d.skip_missing)
    return read_class_folders(d.root, d.class_names)


def check_inputs(cfg: ExperimentConfig, splits, *, unlabeled: bool = True, allow_empty_classes: bool = False,
                 student: bool = True, scored: tuple[str, ...] = SPLITS):
    """Every data source the run will read, checked before any run directory is made: each image of
    the train and validation splits, of the test split when ``scored`` holds it (tuning leaves it out:
    its images are never opened) and, when ``unlabeled`` and ``data.unlabeled`` is set, of the
    unlabeled folder (decoded once; the verdicts are cached, so the datasets built later do not decode
    them again), a training image for every class, and the initial-weights files (of the Student too
    when ``student``). Raises :class:`DataError` naming the file, folder or class, or
    :class:`WeightsError` naming the setting; returns the unlabeled table (or None)."""
    from ird_tf.data.checks import apply_verdicts
    from ird_tf.data.pipeline import check_images
    from ird_tf.data.readers import read_unlabeled
    from ird_tf.errors import DataError

    d = cfg.data
    tables = {"train": splits.train, "val": splits.val, **({"test": splits.test} if "test" in scored else {})}
    unlabeled_table = read_unlabeled(d.unlabeled) if unlabeled and d.unlabeled else None
    if unlabeled_table is not None:
        tables["unlabeled"] = unlabeled_table
    cache_dir = Path(d.cache_dir) / "checks"
    kept = {}
    for split, table in tables.items():
        checks = check_images([str(p) for p in table["path"]], cache_dir=cache_dir)
        try:
            kept[split] = table.iloc[apply_verdicts(checks, d.skip_corrupt)]
        except DataError as e:
            where = f"the unlabeled folder {d.unlabeled}" if split == "unlabeled" else f"the {split} split"
            raise DataError(f"{where}: {e}") from e
    counts = kept["train"]["label"].value_counts()
    empty = [name for k, name in enumerate(splits.class_names) if counts.get(k, 0) == 0]
    if empty:
        message = (f"class(es) {empty} have no training images (classes: {list(splits.class_names)}); "
                   "a class the model never sees cannot be learned")
        if not allow_empty_classes:
            raise DataError(f"{message}. Add images, or pass --allow-empty-classes to train anyway")
        from ird_tf.progress import say

        say(f"warning: {message}; training anyway (--allow-empty-classes)")
    from ird_tf.runs.classifiers import check_weights

    check_weights(cfg, len(splits.class_names), student=student)
    return unlabeled_table


def datasets(cfg: ExperimentConfig, splits, view: InputView, *, train_table=None,
             scored: tuple[str, ...] = SPLITS):
    """(train, evaluation sets, steps_per_epoch) for a model reading ``view``: ``train`` is a function of
    the batch to start at (``fit`` resumes the stream where the backup left it) giving the repeating
    augmented, class-balanced training set; the evaluation sets (``{split: dataset}``, the validation
    split and the others of ``scored``; a split left out is never opened) are one pass in file order.
    ``train_table`` replaces the labelled training table (an unlabeled folder: the training batches carry no labels)."""
    from ird_tf.data.pipeline import steps_per_epoch, training_dataset

    d = cfg.data
    labeled = train_table is None
    table = splits.train if labeled else train_table
    common = _reading(cfg, splits)

    def train(start_batch: int = 0):
        return training_dataset(table, view, augment=d.augment, seed=cfg.run.seed, labeled=labeled,
                                class_balanced=d.class_balanced and labeled, jit=cfg.run.augment_jit,
                                start_batch=start_batch, **common)

    evaluation = {split: _evaluation(getattr(splits, split), view, common, labeled=True)
                  for split in SPLITS if split == "val" or split in scored}
    return train, evaluation, steps_per_epoch(len(table), d.batch_size)


def calibration_dataset(cfg: ExperimentConfig, splits, view: InputView, *, train_table=None):
    """The training images once, in file order and without augmentation (labels or not): what the
    BatchNorm statistics are recomputed over when ``optim.recalibrate_bn`` is on."""
    labeled = train_table is None
    table = splits.train if labeled else train_table
    return _evaluation(table, view, _reading(cfg, splits), labeled=labeled)


def _evaluation(table, view: InputView, reading: dict, *, labeled: bool):
    """One pass over ``table`` in file order for ``view`` (``evaluation_dataset``), shared by the runs of
    a study that read the same files the same way (``pool.shared``)."""
    import hashlib
    import json
    from dataclasses import asdict

    from ird_tf.data.pipeline import evaluation_dataset
    from ird_tf.runs import pool

    labels = table["label"] if "label" in table else [None] * len(table)
    files = hashlib.sha1("\n".join(f"{p}\t{y}" for p, y in zip(table["path"], labels, strict=True))
                         .encode()).hexdigest()
    key = json.dumps({"dataset": "evaluation", "files": files, "view": asdict(view), "labeled": labeled,
                      "reading": {k: str(v) for k, v in reading.items()}}, sort_keys=True)
    return pool.shared(key, lambda: evaluation_dataset(table, view, labeled=labeled, **reading))


def _reading(cfg: ExperimentConfig, splits) -> dict:
    """How every dataset of a run reads its images (batch, cache, corrupt files, verdict cache)."""
    d = cfg.data
    return dict(batch_size=d.batch_size, cache=d.cache, skip_corrupt=d.skip_corrupt,
                num_classes=len(splits.class_names), cache_dir=Path(d.cache_dir) / "checks")


__all__ = ["calibration_dataset", "check_inputs", "datasets", "load_splits", "setup_runtime"]
