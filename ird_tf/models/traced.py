"""One compiled function per (model, purpose), kept on the model itself.

Validation, BatchNorm recalibration and scoring each wrap the model in a ``tf.function``. Made anew for
every run, each is traced anew, about a second per run for the small Students of the studies, and the
traced graphs outlive the run. Kept on the model, a model that trains run after run (``ird_tf.runs.pool``)
traces each once. The functions live in the model's own ``__dict__``, not in a table keyed by the model, so
they are collected with it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

_ATTR = "_ird_traced"


def traced(model: Any, key: Hashable, make: Callable[[], Any]) -> Any:
    """``make()`` the first time ``(model, key)`` is asked for, the same object afterwards. ``key`` must
    name everything ``make`` bakes into the function besides ``model`` (an input key, a mode)."""
    functions = vars(model).setdefault(_ATTR, {})  # vars(): past Keras's attribute tracking
    if key not in functions:
        functions[key] = make()
    return functions[key]


__all__ = ["traced"]
