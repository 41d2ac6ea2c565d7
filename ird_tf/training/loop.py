"""``fit``: one training run in a run directory, crash-safe and resumable with the same call.

Run directory after ``fit``::

    backup/             crash-safe training state (weights + optimizer + epoch), kept after the run
    best.weights.h5     classifier weights of the best epoch by ``monitor`` (val quadratic kappa)
    best.json           that epoch (1-based), the monitored value and the epoch's logs
    last.weights.h5     classifier weights after the last epoch (while training: as of the backup)
    history.csv         one row per epoch: every loss term, accuracy, learning rate, val metrics
    tb/                 TensorBoard (one run): described scalars per epoch (step = epoch, from 1), titled
                        attention panels (Distiller, four epochs: ``board.panel_epochs``); hparams and
                        final scores when the caller adds them
    done.json           written last; a run with it returns at once

Killed at any moment (SIGKILL included), the same call resumes from the last backup (epoch, weights and
optimizer state; the epochs after it are replayed from their first batch) and completes ``epochs``. The
backup is saved at an epoch's end once ``checkpoint_seconds`` have passed since the last one (0: every
epoch) and after the last epoch. Given the
training stream as a function of its start, a run resumed at an epoch's end continues with the batches an
uninterrupted run would have seen, so its history is the same.
The optimizer's step count resumes at the start of the replayed epoch, so a learning-rate schedule
continues on the curve of an uninterrupted run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from ird_tf.config import ConfigError, OptimConfig
from ird_tf.progress import say
from ird_tf.training import board
from ird_tf.training import callbacks as cb
from ird_tf.training.distiller import Distiller
from ird_tf.training.runtime import worker_dir
from ird_tf.training.timing import Stopwatch, collections_timed


def learning_rate(cfg: OptimConfig, steps_per_epoch: int | None = None):
    """The learning rate of ``cfg``: a number (``schedule: constant``) or Keras's ``CosineDecay``
    (``schedule: cosine``) over ``cfg.epochs * steps_per_epoch`` optimizer steps: linear warm-up from 0
    to ``learning_rate`` over ``warmup_epochs``, then cosine decay to ``final_lr_fraction`` of it. The
    schedule is a function of the optimizer's ``iterations``, which the backup holds, so a resumed run
    continues on the same curve."""
    if cfg.schedule == "constant":
        return cfg.learning_rate
    if cfg.schedule != "cosine":
        raise ConfigError(f"optim.schedule={cfg.schedule!r} is not accepted; expected one of "
                          "['constant', 'cosine']")
    if not steps_per_epoch or steps_per_epoch < 1:
        raise ValueError("make_optimizer: schedule 'cosine' needs steps_per_epoch >= 1")
    total = cfg.epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup > 0:
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, alpha=cfg.final_lr_fraction,
            warmup_target=cfg.learning_rate, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=total,
                                                  alpha=cfg.final_lr_fraction)


def make_optimizer(cfg: OptimConfig, steps_per_epoch: int | None = None) -> keras.optimizers.Optimizer:
    """Adam, AdamW or SGD (momentum 0.9) from ``OptimConfig``, with its learning rate or schedule
    (:func:`learning_rate`; ``steps_per_epoch`` is needed by a schedule, ``cfg.epochs`` is the run's
    length). AdamW is Keras 3's own, which replaces the end-of-life tensorflow-addons version. Under
    ``mixed_float16`` ``compile`` wraps it in a ``LossScaleOptimizer`` by itself."""
    lr = learning_rate(cfg, steps_per_epoch)
    if cfg.name == "adam":
        return keras.optimizers.Adam(lr, weight_decay=cfg.weight_decay or None)
    if cfg.name == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay)
    if cfg.name == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, weight_decay=cfg.weight_decay or None)
    raise ConfigError(f"optim.name={cfg.name!r} is not accepted; expected one of ['adam', 'adamw', 'sgd']")


def first_batch(dataset: tf.data.Dataset, n: int):
    """The first ``n`` examples of a batched dataset as NumPy (for TensorBoard images)."""
    for batch in dataset.take(1):
        return tf.nest.map_structure(lambda t: t.numpy()[:n], batch)
    return None


def fit(
    model: keras.Model,
    train_ds: tf.data.Dataset | Callable[[int], tf.data.Dataset],
    val_ds: tf.data.Dataset | None,
    *,
    run_dir: str | Path,
    epochs: int,
    steps_per_epoch: int,
    num_classes: int,
    monitor: str = "val_kappa",
    mode: str = "max",
    val_input_key: str | None = None,
    extra_callbacks: tuple = (),
    verbose: int = 2,
    backup_every_steps: int | None = None,
    checkpoint_seconds: float = 0.0,
    attention_images: int = 4,
    restore_best: bool = True,
    class_names: Sequence[str] | None = None,
    calibration_ds: tf.data.Dataset | None = None,
    stopwatch: Stopwatch | None = None,
) -> dict[str, list[float]]:
    """Trains a compiled ``Supervised``/``Distiller`` (or any model with a custom ``train_step``) for
    ``epochs`` epochs of ``steps_per_epoch`` batches of the (repeating) ``train_ds``, scoring
    ``val_ds`` (finite, ``(x, label)``) each epoch, and returns the whole history ``{column: [per
    epoch]}`` as in ``history.csv`` (over all resumes). ``train_ds`` may be a function of the number of
    batches already trained that returns the stream from there (``training_dataset``'s ``start_batch``):
    a run resumed at an epoch's end then trains on exactly the batches an uninterrupted run would.

    ``val_input_key``: feed ``x[val_input_key]`` to the classifier for validation instead of the
    model's own ``call``. ``attention_images``: number of validation patches drawn with teacher and
    student maps in TensorBoard each epoch (Distiller only; 0 switches it off). ``restore_best``: load
    ``best.weights.h5`` into the classifier at the end (also when the run had already finished).
    ``class_names``: titles of the attention panels (default: the class indices).
    ``calibration_ds``: finite batches (the training images without augmentation) over which the
    classifier's BatchNorm statistics are recomputed at each epoch end, before validation and checkpoints
    (``callbacks.RecalibrateBatchNorm``); None keeps Keras's moving averages of the training batches.
    ``checkpoint_seconds``: how often the backup and ``last.weights.h5`` are saved (``callbacks.Backup``).
    ``stopwatch``: receives the time of every train step, validation pass, recalibration and epoch end
    (``ird_tf.training.timing``).
    Raises ``callbacks.TrainingDiverged`` when a loss becomes NaN/Inf (checkpoints keep the last good
    state; ``done.json`` is not written).
    """
    if not callable(train_ds):
        _check_datasets(train_ds, val_ds, steps_per_epoch)
    root = Path(run_dir)
    out = worker_dir(root)  # other workers of a cluster: same work, own files
    out.mkdir(parents=True, exist_ok=True)
    done = out / "done.json"
    damage = cb.damaged_state(out)
    if damage:  # a resume would read it: start the run again rather than continue from a wrong state
        say(f"{damage}: starting this run again from epoch 1", source="fit")
        cb.clear_state(out)
        done.unlink(missing_ok=True)
    if done.is_file() and json.loads(done.read_text()).get("epochs", 0) >= epochs:
        say(f"{out} already finished ({epochs} epochs); nothing to do", source="fit")
        _load_best(model, out, restore_best)
        return cb.read_history(out / "history.csv")
    watch = stopwatch or Stopwatch()
    with model.distribute_strategy.scope(), watch.phase("restore"):
        initial_epoch = cb.restore_backup(model, out / "backup", steps_per_epoch)
    if callable(train_ds):  # the stream from where the backup left it: a resume trains on the same data
        with watch.phase("stream"):
            train_ds = train_ds(initial_epoch * steps_per_epoch)
        _check_datasets(train_ds, val_ds, steps_per_epoch)
    what = f"resuming after epoch {initial_epoch}" if initial_epoch else "starting"
    say(f"{type(model).__name__}: {what}, {epochs} epochs x {steps_per_epoch} steps, run dir {out}",
        source="fit")

    steps = cb.StepTimes(watch)
    callbacks: list[keras.callbacks.Callback] = [steps, cb.StopOnNonFinite(out)]
    if calibration_ds is not None:
        callbacks.append(cb.RecalibrateBatchNorm(calibration_ds, val_input_key, stopwatch=watch))
    if val_ds is not None:
        callbacks.append(cb.ValidationMetrics(val_ds, num_classes, val_input_key, stopwatch=watch))
    callbacks += [cb.LearningRateLogger()]
    if val_ds is not None:
        callbacks.append(cb.BestCheckpoint(out, monitor=monitor, mode=mode))
    callbacks.append(cb.HistoryCSV(out / "history.csv", initial_epoch=initial_epoch))
    show_maps = isinstance(model, Distiller) and val_ds is not None and attention_images > 0
    val_batch = None
    if show_maps:
        with watch.phase("board_batch"):
            val_batch = first_batch(val_ds, attention_images)
    callbacks.append(board.ScalarBoard(
        out / "tb", term_weights=getattr(model, "term_weights", {}),
        label_smoothing=_label_smoothing(model),
        val_batch=val_batch,
        class_names=class_names, num_classes=num_classes, max_images=attention_images))
    callbacks += [*extra_callbacks,
                  cb.Backup(out / "backup", every_steps=backup_every_steps, every_seconds=checkpoint_seconds,
                            last_weights=out / "last.weights.h5"),
                  cb.EpochEndDone(steps)]

    start = time.time()
    try:
        with collections_timed(watch):
            steps.fit_called()
            model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch, initial_epoch=initial_epoch,
                      callbacks=callbacks, verbose=verbose, shuffle=False)
            steps.fit_returned()
    except cb.TrainingDiverged as e:
        cb.write_json(out / "diverged.json", {"message": str(e), "time": time.time()})
        raise
    with watch.phase("finish"):
        best = json.loads((out / "best.json").read_text()) if (out / "best.json").is_file() else None
        cb.write_json(done, {"epochs": epochs, "seconds_this_session": time.time() - start, "best": best})
        _load_best(model, out, restore_best)
    return cb.read_history(out / "history.csv")


def _check_datasets(train_ds: tf.data.Dataset, val_ds: tf.data.Dataset | None, steps_per_epoch: int):
    n = int(train_ds.cardinality())
    if 0 <= n < steps_per_epoch:
        raise ValueError(
            f"fit: train_ds yields {n} batches but steps_per_epoch={steps_per_epoch}; the training dataset "
            "must repeat (training_dataset does)"
        )
    if val_ds is not None and int(val_ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError("fit: val_ds repeats forever; validation needs one finite pass (training=False)")


def _label_smoothing(model: keras.Model) -> float:
    if isinstance(model, Distiller):
        return model.loss_cfg.label_smoothing
    return float(getattr(model, "label_smoothing", 0.0))


def _load_best(model: keras.Model, run_dir: Path, restore_best: bool) -> None:
    path = run_dir / "best.weights.h5"
    if restore_best and path.is_file():
        cb.classifier_of(model).load_weights(str(path))


__all__ = ["fit", "learning_rate", "make_optimizer"]
