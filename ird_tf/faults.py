"""Fault injection for tests: a named point in the code where a test can kill the process.

``IRD_TF_FAULT=<point>[@<n>]`` makes the ``n``-th call (default the first) of :func:`point` with that
name send SIGKILL to its own process, so a test kills a command exactly "while best.weights.h5 is being
written" or "after epoch 2's backup" instead of guessing a moment. With ``IRD_TF_FAULT_ERROR=ENOSPC``
the point raises ``OSError(ENOSPC)`` instead (a full disk). Unset, a point is one dictionary look-up.

Points: ``write:<file name>`` (an atomic write, temporary file written, not yet renamed), ``batch``
(after a training batch), ``epoch`` (after an epoch's backup is committed), ``dataset`` (the synthetic
dataset generated but not yet renamed into place), ``export`` (SavedModel written, not yet renamed),
``slide-batch:<slide stem>`` (a batch of that slide's tiles classified).
TF-free.
"""

from __future__ import annotations

import errno
import os
import signal

ENV, ENV_ERROR = "IRD_TF_FAULT", "IRD_TF_FAULT_ERROR"
_counts: dict[str, int] = {}


def point(name: str) -> None:
    """Kills this process (or raises the configured ``OSError``) when ``IRD_TF_FAULT`` names this point
    and this is its chosen occurrence; does nothing otherwise."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, nth = spec.partition("@")
    if target != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] != int(nth or 1):
        return
    if os.environ.get(ENV_ERROR) == "ENOSPC":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + f" (injected at {name})")
    os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV", "ENV_ERROR", "point"]
