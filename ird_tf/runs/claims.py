"""Run claims: one process trains a run directory at a time (``lock.pid`` holds its host and pid). TF-free."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.progress import say
from ird_tf.files import process_alive, stray_temporaries
from ird_tf.runs.results import FAILED, RunResult, read_failed, read_result


def _lock_owner(lock: Path) -> tuple[str, int] | None:
    try:
        host, pid = lock.read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _take_over(run_dir: Path) -> None:
    """What an earlier attempt left, cleared by the process that now owns the run: temporary files of a
    writer killed half-way and the markers of a failure (said, with the reason). Its trained state is
    kept: the run resumes from its last good backup."""
    for tmp in stray_temporaries(run_dir):
        tmp.unlink(missing_ok=True)
    failed = read_failed(run_dir)
    if failed is not None:
        say(f"{run_dir}: the previous attempt failed ({failed.get('reason', '')[:300]}); resuming from its "
            "last good state")
    for marker in (FAILED, "diverged.json"):
        (run_dir / marker).unlink(missing_ok=True)


@contextmanager
def run_claim(run_dir: Path, cfg: ExperimentConfig, poll: float = 5.0) -> Iterator[RunResult | None]:
    """Yields the run's result if it has finished, else None while this process owns the run.

    One process trains a run directory at a time (``lock.pid`` holds its host and pid): another
    command or sweep that needs the same run waits for it and then finds its result, so sweeps can run
    side by side. A lock left by a killed process on this host is taken over. Multi-worker runs skip
    the lock: all their workers train the same run together.
    """
    found = read_result(run_dir)
    if found is not None or cfg.run.strategy == "multiworker":
        yield found
        return
    lock, me, waiting, owned = run_dir / "lock.pid", socket.gethostname(), False, False
    while True:
        run_dir.mkdir(parents=True, exist_ok=True)  # again: a failed owner may have removed it
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is None and time.time() - lock.stat().st_mtime < 10 * poll + 10:
                owner = (me, -1)  # just created, its owner is writing it
            if owner is None or (owner[0] == me and owner[1] != -1 and not process_alive(owner[1])):
                lock.unlink(missing_ok=True)  # its process is gone (killed): take the run over
                continue
            if read_result(run_dir) is not None:
                break
            if not waiting:
                say(f"{run_dir} is being trained by process {owner[1]} on {owner[0]}: waiting for it "
                    f"(delete {lock} if that process is gone)")
                waiting = True
            time.sleep(poll)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{me} {os.getpid()}\n")
        owned = True
        break
    if owned:
        _take_over(run_dir)
    try:
        yield read_result(run_dir)
    finally:
        if owned:
            lock.unlink(missing_ok=True)


__all__ = ["run_claim"]
