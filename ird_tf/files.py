"""Atomic file writes: a reader, or a process killed at any moment, sees the old file or the new one,
never a torn one.

Every writer of the project goes through :func:`atomic_path`. The temporary file is unique (several
processes may write the same folder: studies run side by side) and lives in the target's folder (so
the final rename stays on one file system); its name starts with :data:`TMP_PREFIX` and ends with the
target's own name, so tools that infer the format from the suffix (``.weights.h5``, ``.png``) work.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ird_tf import faults

TMP_PREFIX = ".tmp-"


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a fresh temporary path beside ``path``; when the block ends without an error the file
    written there replaces ``path`` (``os.replace``), otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        faults.point(f"write:{path.name}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any, **kwargs: Any) -> Path:
    """``obj`` as indented JSON (``kwargs`` go to ``json.dumps``), written atomically."""
    return write_text(path, json.dumps(obj, indent=2, **kwargs) + "\n")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (its temporaries or claims are still its own)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_figure(path: str | Path, fig: Any, **savefig: Any) -> Path:
    """A Matplotlib figure saved as PNG to ``path`` atomically (``savefig`` options such as ``dpi``)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **savefig)
    return Path(path)


def stray_temporaries(folder: str | Path) -> list[Path]:
    """Temporary files that a killed writer left below ``folder`` (none after a clean run)."""
    return sorted(p for p in Path(folder).rglob(f"{TMP_PREFIX}*") if p.is_file())


__all__ = ["TMP_PREFIX", "atomic_path", "process_alive", "stray_temporaries", "write_bytes", "write_figure",
           "write_json", "write_text"]
