"""What every task needs before it trains: the process runtime, the labelled splits and their datasets."""

from __future__ import annotations

from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.data.view import InputView


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


def datasets(cfg: ExperimentConfig, splits, view: InputView, *, train_table=None):
    """(train, val, test, steps_per_epoch) for a model reading ``view``: the training set repeats
    (augmented, class-balanced), the evaluation sets are one pass in file order. ``train_table``
    replaces the labelled training table (an unlabeled folder: the training batches carry no labels)."""
    from ird_tf.data.pipeline import evaluation_dataset, steps_per_epoch, training_dataset

    d = cfg.data
    labeled = train_table is None
    table = splits.train if labeled else train_table
    common = dict(batch_size=d.batch_size, cache=d.cache, skip_corrupt=d.skip_corrupt,
                  num_classes=len(splits.class_names), cache_dir=Path(d.cache_dir) / "checks")
    train = training_dataset(table, view, augment=d.augment, seed=cfg.run.seed, labeled=labeled,
                             class_balanced=d.class_balanced and labeled, jit=cfg.run.augment_jit, **common)
    val = evaluation_dataset(splits.val, view, **common)
    test = evaluation_dataset(splits.test, view, **common)
    return train, val, test, steps_per_epoch(len(table), d.batch_size)




def calibration_dataset(cfg: ExperimentConfig, splits, view: InputView, *, train_table=None):
    """The training images once, in file order and without augmentation (labels or not): what the
    BatchNorm statistics are recomputed over when ``optim.recalibrate_bn`` is on."""
    from ird_tf.data.pipeline import evaluation_dataset

    d = cfg.data
    labeled = train_table is None
    table = splits.train if labeled else train_table
    return evaluation_dataset(table, view, batch_size=d.batch_size, labeled=labeled,
                              num_classes=len(splits.class_names), cache=d.cache,
                              skip_corrupt=d.skip_corrupt, cache_dir=Path(d.cache_dir) / "checks")


__all__ = ["calibration_dataset", "datasets", "load_splits", "setup_runtime"]
