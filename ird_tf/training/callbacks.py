"""Callbacks of a training run: validation metrics, checkpoints, crash-safe backup, divergence stop and
history (TensorBoard: ``ird_tf.training.board``).

Every file is written atomically (``ird_tf.files.atomic_path``): a process killed at any moment leaves
either the old or the new version, never a torn one. Validation scores come from ``ird_tf.scoring``,
the definition the evaluation package uses too, so ``best.json`` and ``metrics_val.json`` agree for the
same weights and split. An undefined score (kappa of a single-class split) is NaN in memory, ``nan`` in
``history.csv`` and ``null`` in JSON files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ird_tf import faults, files
from ird_tf.errors import TrainingDiverged
from ird_tf.models.traced import traced
from ird_tf.scoring import classification_scores, improves, json_safe, mean_cross_entropy
from ird_tf.training import timing


def classifier_of(model: keras.Model) -> keras.Model:
    """The network a wrapper trains (``Supervised.classifier``, ``Distiller.student``), else the model."""
    return getattr(model, "classifier", model)


def write_json(path: Path, obj) -> None:
    """Strict JSON (NaN and infinities as ``null``), written atomically."""
    files.write_json(path, json_safe(obj), allow_nan=False, default=float)


def save_weights(model: keras.Model, path: Path) -> None:
    """``model.save_weights`` to a temporary ``.weights.h5`` then an atomic rename."""
    with files.atomic_path(path) as tmp:
        model.save_weights(str(tmp))


# -- validation --------------------------------------------------------------------------------------------
def predict_logits(model: keras.Model, dataset: tf.data.Dataset, input_key: str | None = None,
                   fn=None) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, logits)`` over a finite ``(x, label)`` dataset. Without ``input_key`` the model's own
    ``call`` picks the input (``Supervised``: its key, ``Distiller``: ``lr``); with it, the classifier gets
    ``x[input_key]``. ``fn``: a compiled ``x -> logits`` to reuse across calls."""
    fn = fn or logits_function(model, input_key)
    labels, logits = [], []
    for batch in dataset:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise ValueError("validation data must yield (x, label) batches; got batches without labels")
        labels.append(np.asarray(batch[1]))
        logits.append(fn(batch[0]).numpy())
    if not labels:
        raise ValueError("validation data is empty")
    return np.concatenate(labels).astype(np.int64), np.concatenate(logits).astype(np.float64)


def logits_function(model: keras.Model, input_key: str | None = None):
    """The compiled ``x -> logits`` of ``model`` (of its classifier on ``x[input_key]``), one per model
    and key (:func:`ird_tf.models.traced.traced`)."""
    net = classifier_of(model) if input_key else model

    def make():
        @tf.function(reduce_retracing=True)
        def fn(x):
            images = x[input_key] if input_key else x
            return tf.cast(net(images, training=False)["logits"], tf.float32)

        return fn

    return traced(net, ("logits", input_key), make)


def validation_scores(labels: np.ndarray, logits: np.ndarray, num_classes: int) -> dict[str, float]:
    """Loss (mean cross-entropy, nats) and the scores of :func:`ird_tf.scoring.classification_scores`:
    balanced accuracy, quadratic Cohen's kappa (NaN when undefined), macro F1 (over the classes present
    in labels or predictions) and accuracy."""
    return {"loss": mean_cross_entropy(labels, logits), **classification_scores(labels, logits, num_classes)}


class ValidationMetrics(keras.callbacks.Callback):
    """Adds ``val_loss, val_accuracy, val_balanced_accuracy, val_kappa, val_macro_f1`` to the epoch logs
    (one prediction pass over ``dataset``), before the checkpoint callbacks that follow it read them."""

    def __init__(self, dataset: tf.data.Dataset, num_classes: int, input_key: str | None = None,
                 stopwatch: timing.Stopwatch | None = None):
        super().__init__()
        self.dataset, self.num_classes, self.input_key = dataset, int(num_classes), input_key
        self.stopwatch = stopwatch or timing.Stopwatch()
        self._fn = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        self._fn = self._fn or logits_function(self.model, self.input_key)
        with self.stopwatch.phase("validation"):
            labels, logits = predict_logits(self.model, self.dataset, self.input_key, fn=self._fn)
        logs.update({f"val_{k}": v for k, v in validation_scores(labels, logits, self.num_classes).items()})


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model`` (nested models included)."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batch_norm(classifier: keras.Model, dataset: tf.data.Dataset, input_key: str | None = None,
                           max_batches: int | None = None, forward=None) -> int:
    """Sets the moving mean and variance of every BatchNormalization layer of ``classifier`` to their
    average over the batches of ``dataset`` (one pass, the forward in training mode: batch statistics),
    so inference normalises with the statistics of the images it is meant for rather than an
    exponential average of the last few augmented training batches. Weights are not changed. Returns
    the number of batches read (0: nothing changed: no BatchNormalization layer or an empty dataset).

    The forward pass is one compiled function with every layer's momentum at 0 (its moving statistics
    are then the batch's own), averaged here: layer by layer in eager mode it cost as much as the
    epoch's training steps. ``forward``: a compiled ``x -> classifier(x, training=True)`` from an
    earlier call to reuse (:func:`training_forward`; its graph keeps momentum 0)."""
    layers = batch_norm_layers(classifier)
    if not layers:
        return 0
    saved = [layer.momentum for layer in layers]
    sums = [[np.zeros(v.shape, np.float64) for v in (layer.moving_mean, layer.moving_variance)]
            for layer in layers]
    n = 0
    try:
        for layer in layers:
            layer.momentum = 0.0
        forward = forward or training_forward(classifier)  # traced (and retraced) with momentum 0
        for batch in dataset:
            x = batch[0] if isinstance(batch, tuple) else batch
            if input_key is not None and isinstance(x, dict):
                x = x[input_key]
            forward(x)
            n += 1
            for layer, (mean, var) in zip(layers, sums, strict=True):
                mean += layer.moving_mean.numpy()
                var += layer.moving_variance.numpy()
            if max_batches and n >= max_batches:
                break
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum
    if n:
        for layer, (mean, var) in zip(layers, sums, strict=True):
            layer.moving_mean.assign((mean / n).astype(layer.moving_mean.dtype))
            layer.moving_variance.assign((var / n).astype(layer.moving_variance.dtype))
    return n


def training_forward(classifier: keras.Model):
    """``classifier(x, training=True)`` compiled, for :func:`recalibrate_batch_norm` only (it is traced
    and called while every BatchNormalization momentum is 0), one per classifier."""
    return traced(classifier, "training_forward",
                  lambda: tf.function(lambda x: classifier(x, training=True), reduce_retracing=True))


class RecalibrateBatchNorm(keras.callbacks.Callback):
    """At each epoch end, before validation and checkpoints, recomputes the classifier's BatchNorm
    moving statistics over ``dataset`` (finite: the training images without augmentation), see
    :func:`recalibrate_batch_norm`. Measured on the ``cpu`` teacher: moving statistics collected on
    augmented training batches (momentum 0.9) cost 0.2-0.3 of validation balanced accuracy against the
    same weights with statistics of the un-augmented training images, and moved it by several points
    from epoch to epoch with the weights unchanged."""

    def __init__(self, dataset: tf.data.Dataset, input_key: str | None = None,
                 stopwatch: timing.Stopwatch | None = None):
        super().__init__()
        self.dataset, self.input_key = dataset, input_key
        self.stopwatch = stopwatch or timing.Stopwatch()
        self._forward = None

    def on_epoch_end(self, epoch, logs=None):
        classifier = classifier_of(self.model)
        self._forward = self._forward or training_forward(classifier)
        with self.stopwatch.phase("recalibration"):
            recalibrate_batch_norm(classifier, self.dataset, self.input_key, forward=self._forward)


class LearningRateLogger(keras.callbacks.Callback):
    """Puts the optimizer's current learning rate in the epoch logs (history.csv and TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)
        if logs is not None and optimizer is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


# -- timing ------------------------------------------------------------------------------------------------
class StepTimes(keras.callbacks.Callback):
    """Times every train step (``train_step``), the epoch-end work (``epoch_end``: placed first in
    the callback list, its ``on_epoch_end`` starts the clock; :class:`EpochEndDone`, placed last, stops
    it), Keras's setup from the call of ``fit`` (:meth:`fit_called`) to the start of training
    (``keras_setup``), what it does between the start of training and its first step (``fit_start``),
    between steps and epochs, the callbacks' end of training (``train_end``, up to :class:`EpochEndDone`)
    and Keras's end from there until ``fit`` returns (:meth:`fit_returned`: ``keras_end``, which
    includes the release of the training stream's iterator). Every second of ``fit`` then has a name."""

    def __init__(self, stopwatch: timing.Stopwatch):
        super().__init__()
        self.stopwatch = stopwatch
        self._t0 = 0.0
        self._train_begin: float | None = None
        self._t_end: float | None = None
        self.epoch_end_start = 0.0
        self.epoch_end_done: float | None = None
        self.train_end_start = 0.0
        self.train_end_done: float | None = None
        self._fit_called: float | None = None

    def fit_called(self) -> None:
        """Call right before ``model.fit``."""
        self._fit_called = time.perf_counter()

    def fit_returned(self) -> None:
        """Call right after ``model.fit`` returns."""
        if self.train_end_done is not None:
            self.stopwatch.add("keras_end", time.perf_counter() - self.train_end_done)

    def on_train_begin(self, logs=None):
        self._train_begin = time.perf_counter()
        if self._fit_called is not None:
            self.stopwatch.add("keras_setup", self._train_begin - self._fit_called)

    def on_train_end(self, logs=None):  # the callbacks' end of training (TensorBoard's writer closes)
        self.train_end_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._t0 = time.perf_counter()
        if self._train_begin is not None:
            self.stopwatch.add("fit_start", self._t0 - self._train_begin)
            self._train_begin = None
        elif self._t_end is not None:  # Keras's own work between two steps of an epoch
            self.stopwatch.add("between_steps", self._t0 - self._t_end)

    def on_train_batch_end(self, batch, logs=None):
        self._t_end = time.perf_counter()
        self.stopwatch.add("train_step", self._t_end - self._t0)

    def on_epoch_begin(self, epoch, logs=None):
        self._t_end = None
        if self.epoch_end_done is not None:  # from the last epoch's end to this one's first step
            self.stopwatch.add("between_epochs", time.perf_counter() - self.epoch_end_done)

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_end_start = time.perf_counter()


class EpochEndDone(keras.callbacks.Callback):
    """The last callback: the epoch-end work since :class:`StepTimes` saw the epoch end."""

    def __init__(self, start: StepTimes):
        super().__init__()
        self.start = start

    def on_train_end(self, logs=None):
        self.start.train_end_done = time.perf_counter()
        self.start.stopwatch.add("train_end", self.start.train_end_done - self.start.train_end_start)

    def on_epoch_end(self, epoch, logs=None):
        self.start.epoch_end_done = time.perf_counter()
        self.start.stopwatch.add("epoch_end", self.start.epoch_end_done - self.start.epoch_end_start)


# -- faults ------------------------------------------------------------------------------------------------
class StopOnNonFinite(keras.callbacks.Callback):
    """Raises ``TrainingDiverged`` as soon as a logged loss is NaN or infinite. It must come first in the
    callback list: raising ends ``fit`` before any later callback could save the diverged weights, so
    ``best``/``last`` checkpoints and the backup keep the last good state."""

    def __init__(self, run_dir: Path | None = None):
        super().__init__()
        self.run_dir = run_dir
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        bad = {k: v for k, v in (logs or {}).items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            kept = ""
            if self.run_dir is not None:
                files = [p.name for p in (self.run_dir / "best.weights.h5", self.run_dir / "last.weights.h5")
                         if p.exists()]
                kept = (f" Kept in {self.run_dir}: {', '.join(files)}." if files
                        else " No checkpoint yet: nothing is kept.")
            terms = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
            raise TrainingDiverged(
                f"training diverged at epoch {self._epoch + 1}, step {batch + 1}: {terms}. Stopped.{kept} "
                "Try a lower learning rate (optim.learning_rate) or smaller loss weights."
            )


class Backup(keras.callbacks.Callback):
    """Crash-safe training state in ``backup_dir`` (wrapper weights, optimizer state, epoch; with
    ``last_weights``, the classifier's weights to that file as well), saved at the end of an epoch once
    ``every_seconds`` have passed since the last save (0: every epoch), always after the last epoch, and
    optionally every ``every_steps`` batches. ``restore_backup`` reads it back.

    Like ``keras.callbacks.BackupAndRestore`` but atomic: the weights go to a new file and
    ``latest.json`` (the commit point) is replaced afterwards, so a SIGKILL at any moment leaves a
    consistent backup. Put it last in the callback list so an epoch's checkpoints, history and
    TensorBoard events are written before the backup declares that epoch done. Saving on a time interval
    rather than every epoch: a short run's epochs take a second or two and a save about 0.05 s, twice
    (state and last weights)."""

    def __init__(self, backup_dir: Path, every_steps: int | None = None, every_seconds: float = 0.0,
                 last_weights: Path | None = None, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.backup_dir, self.every_steps = Path(backup_dir), every_steps
        self.every_seconds, self.last_weights, self.clock = float(every_seconds), last_weights, clock
        self._epoch, self._steps, self._serial = 0, 0, int(read_backup(self.backup_dir).get("serial", 0))
        self._saved_at = 0.0

    def on_train_begin(self, logs=None):
        self._saved_at = self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1
        if self.every_steps and self._steps % self.every_steps == 0:
            self._save(epoch=self._epoch, step=batch + 1)
        faults.point("batch")

    def on_epoch_end(self, epoch, logs=None):
        last = epoch + 1 >= int(self.params.get("epochs") or 0)
        if last or self.every_seconds <= 0 or self.clock() - self._saved_at >= self.every_seconds:
            if self.last_weights is not None:
                save_weights(classifier_of(self.model), self.last_weights)
            self._save(epoch=epoch + 1, step=0)
        faults.point("epoch")

    def _save(self, epoch: int, step: int) -> None:
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        name = f"state-{self._serial}.weights.h5"
        save_weights(self.model, self.backup_dir / name)
        write_json(self.backup_dir / "latest.json", {"epoch": epoch, "step_in_epoch": step, "weights": name,
                                                     "serial": self._serial, "saved": time.time(),
                                                     "sha256": sha256(self.backup_dir / name)})
        for old in self.backup_dir.glob("state-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)
        self._saved_at = self.clock()


def read_backup(backup_dir: Path) -> dict:
    path = Path(backup_dir) / "latest.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        return {}  # damaged: damaged_state names it before a run resumes


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def damaged_state(run_dir: Path) -> str | None:
    """What is wrong with the training state a resume would read (the backup's ``latest.json`` and
    weights, ``best.json`` and ``best.weights.h5``: unreadable, truncated or changed since written,
    checked against the SHA-256 recorded with them), or None when it is whole or absent."""
    run_dir = Path(run_dir)
    for meta_path, key in ((run_dir / "backup" / "latest.json", "weights"), (run_dir / "best.json", None)):
        if not meta_path.is_file():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            weights = meta_path.parent / meta[key] if key else run_dir / "best.weights.h5"
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"{meta_path} is unreadable ({type(e).__name__})"
        if not weights.is_file():
            return f"{weights} is missing ({meta_path.name} refers to it)"
        expected = meta.get("sha256")
        if expected and sha256(weights) != expected:
            return f"{weights} is damaged (truncated or changed: its SHA-256 differs from {meta_path.name}'s)"
        if not expected and not _readable_h5(weights):
            return f"{weights} is damaged (not a readable HDF5 file)"
    return None


def _readable_h5(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
        return True
    except Exception:
        return False


def clear_state(run_dir: Path) -> None:
    """Removes a run's training state (backup, checkpoints, history) so it starts from its first epoch."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    for name in ("best.json", "best.weights.h5", "last.weights.h5", "history.csv"):
        (run_dir / name).unlink(missing_ok=True)


def restore_backup(model: keras.Model, backup_dir: Path, steps_per_epoch: int | None = None) -> int:
    """Loads the last backup into ``model`` (weights and optimizer state, its ``iterations`` included)
    and returns the number of completed epochs to resume from (0 without a backup). Call it inside the
    strategy's scope.

    A mid-epoch backup resumes at the start of that epoch (the partial epoch is replayed); with
    ``steps_per_epoch`` the optimizer's step count is set back to that epoch's start as well, so a
    learning-rate schedule (a function of ``iterations``) follows the same curve as an uninterrupted run
    and ends at its last step."""
    meta = read_backup(backup_dir)
    if not meta:
        return 0
    path = Path(backup_dir) / meta["weights"]
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(str(path))
    epoch = int(meta["epoch"])
    if steps_per_epoch and model.optimizer is not None and int(meta.get("step_in_epoch", 0)):
        optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
        optimizer.iterations.assign(epoch * int(steps_per_epoch))
    return epoch


# -- checkpoints and history -------------------------------------------------------------------------------
class BestCheckpoint(keras.callbacks.Callback):
    """Saves the classifier's weights to ``best.weights.h5`` and ``best.json`` (epoch, 1-based, and the
    epoch's logs) whenever ``monitor`` improves; the best value so far survives a resume.

    Selection follows :func:`ird_tf.scoring.improves`: a number always beats an undefined (NaN) value
    and NaN never beats anything, so NaN is only ever chosen while every epoch so far was NaN: then the
    first epoch is the best (``"value": null`` in ``best.json``) until an epoch has a number."""

    def __init__(self, run_dir: Path, monitor: str = "val_kappa", mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"BestCheckpoint mode={mode!r}; expected 'max' or 'min'")
        self.run_dir, self.monitor, self.mode = Path(run_dir), monitor, mode
        self.best = None

    def on_train_begin(self, logs=None):
        path = self.run_dir / "best.json"
        if path.is_file():
            value = json.loads(path.read_text())["value"]
            self.best = math.nan if value is None else float(value)
        else:
            self.best = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"monitor={self.monitor!r} is not in the epoch logs; available: {sorted(logs)}")
        value = float(logs[self.monitor])
        if improves(value, self.best, self.mode):
            self.best = value
            save_weights(classifier_of(self.model), self.run_dir / "best.weights.h5")
            write_json(self.run_dir / "best.json", {"epoch": epoch + 1, "monitor": self.monitor,
                                                    "value": value, "logs": dict(logs),
                                                    "sha256": sha256(self.run_dir / "best.weights.h5")})


class HistoryCSV(keras.callbacks.Callback):
    """``history.csv``: one row per epoch (``epoch`` 1-based, then the logs). On a resume the rows of
    epochs being replayed are dropped first, so the file never holds an epoch twice."""

    def __init__(self, path: Path, initial_epoch: int = 0):
        super().__init__()
        self.path, self.initial_epoch = Path(path), int(initial_epoch)
        self.rows: list[dict] = []

    def on_train_begin(self, logs=None):
        self.rows = [r for r in read_history_rows(self.path) if int(float(r["epoch"])) <= self.initial_epoch]
        self._write()

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        self._write()

    def _write(self) -> None:
        keys = ["epoch", *sorted({k for r in self.rows for k in r} - {"epoch"})]
        with files.atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)


def read_history_rows(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def read_history(path: Path) -> dict[str, list[float]]:
    """``history.csv`` as ``{column: [value per epoch]}`` (``epoch`` as int; missing cells are NaN)."""
    rows = read_history_rows(path)
    keys = list(rows[0]) if rows else []
    history = {k: [float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rows] for k in keys}
    if "epoch" in history:
        history["epoch"] = [int(e) for e in history["epoch"]]
    return history


__all__ = [
    "ValidationMetrics", "LearningRateLogger", "StopOnNonFinite", "Backup",
    "restore_backup", "read_backup", "damaged_state", "clear_state", "sha256",
    "BestCheckpoint", "HistoryCSV", "read_history",
    "predict_logits", "validation_scores", "classifier_of",
]
