"""Compiled training models, and the evaluation datasets, kept across the runs of one process.

A study trains the same network with the same settings once per seed. Compiled anew for every run, its
train step (second-order gradients for AT+), validation, recalibration and scoring functions are traced
anew, 1-3 s per run: as much as the train steps of a small native Student's whole run. And the graphs
of every run stay in memory (TensorFlow keeps them), so Python's garbage collection slows down run after
run. Here a run whose settings match an earlier run's (everything but the seed) trains the earlier run's
compiled model instead: the fresh model it built under its own seed (initial weights; the Teacher it
distils from) is copied into it and the optimizer goes back to its initial state (zero moments, step
0), so the run computes exactly what it would with a model of its own, with functions already traced.

The validation, test and calibration datasets of a view are the same for every run that reads it (one
pass in file order, decoded images cached in memory): :func:`shared` keeps them, so the files are checked,
decoded and the pipeline's functions instantiated once per study rather than once per run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ird_tf.config import ExperimentConfig

if TYPE_CHECKING:  # TensorFlow is imported by the runs, not by importing this (``--help`` stays fast)
    import keras
    import numpy as np


@dataclass
class _Entry:
    model: keras.Model
    optimizer_state: list[np.ndarray]


T = TypeVar("T")
_POOL: dict[str, _Entry] = {}
_SHARED: dict[str, object] = {}
_KEEPING = [False]


@contextmanager
def keeping() -> Iterator[None]:
    """Within it, :func:`compiled` keeps models for the runs that follow (a study's loop); outside, and
    after it (the models are dropped), every run compiles its own."""
    outer = _KEEPING[0]
    _KEEPING[0] = True
    try:
        yield
    finally:
        _KEEPING[0] = outer
        if not outer:
            _POOL.clear()
            _SHARED.clear()


def pool_key(cfg: ExperimentConfig, **run: object) -> str:
    """What a compiled model depends on: every setting of ``cfg`` but the seed (which sets only initial
    weights, the Teacher's and the data order: all copied in or outside the model), and the run's own
    ``run`` values (role, epochs, steps per epoch, classes, input view...)."""
    settings = cfg.to_dict()
    settings["run"] = {k: v for k, v in settings["run"].items() if k not in ("seed", "name")}
    return json.dumps({"settings": settings, "run": {k: str(v) for k, v in run.items()}}, sort_keys=True)


def compiled(key: str, fresh: keras.Model, compile_model: Callable[[keras.Model], None]) -> keras.Model:
    """The model to train for a run: ``fresh`` (just built, not compiled) compiled by ``compile_model``
    and kept under ``key``, or, when a model is kept under ``key`` already, that model with ``fresh``'s
    weights and its optimizer's initial state. Models are kept only within :func:`keeping`. Call it in
    the strategy's scope."""
    if not _KEEPING[0]:
        compile_model(fresh)
        return fresh
    entry = _POOL.get(key)
    if entry is None:
        compile_model(fresh)
        optimizer = fresh.optimizer
        if not optimizer.built:
            optimizer.build(fresh.trainable_variables)
        _POOL[key] = _Entry(fresh, [v.numpy() for v in optimizer.variables])
        return fresh
    entry.model.set_weights(fresh.get_weights())  # Keras checks the count and shapes
    for variable, value in zip(entry.model.optimizer.variables, entry.optimizer_state, strict=True):
        variable.assign(value)
    return entry.model  # (``fit`` resets ``stop_training`` itself)


def shared(key: str, make: Callable[[], T]) -> T:
    """Within :func:`keeping`, the object kept under ``key`` (made by ``make`` the first time); outside,
    ``make()``. For what does not change from run to run: an evaluation dataset, not a training stream
    (its order follows the run's seed)."""
    if not _KEEPING[0]:
        return make()
    if key not in _SHARED:
        _SHARED[key] = make()
    return _SHARED[key]  # type: ignore[return-value]


def size() -> int:
    """The number of models kept."""
    return len(_POOL)


__all__ = ["compiled", "keeping", "pool_key", "shared", "size"]
