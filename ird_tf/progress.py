"""Progress lines: one format for every command, study and training loop.

``[ird_tf 12:34:56] teacher found: runs/teachers/...`` on standard output, flushed at once, so a
long run read through a pipe or a log file shows where it is. The source in the brackets says which
part speaks (``ird_tf``, ``sweep``, ``label-free``, ``fit``, ``slide``).
"""

from __future__ import annotations

import time


def say(msg: str, source: str = "ird_tf") -> None:
    """Prints one timestamped progress line."""
    print(f"[{source} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


__all__ = ["say"]
