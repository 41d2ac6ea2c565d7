"""Where a run's wall time goes: seconds per phase and per call, so the compute of its train and eval
steps (at their steady speed) can be told from everything else (tracing, data, checkpoints, TensorBoard).
TF-free; the callbacks that feed it are ``callbacks.StepTimes`` and ``EpochEndDone``.

A phase called many times (a train step, a validation pass) costs ``calls x median call`` as compute: the
first call's extra time (tracing) counts as overhead, not compute."""

from __future__ import annotations

import gc
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

#: the phases that are the work itself: what a run costs at the steady speed of its steps
COMPUTE = ("train_step", "validation", "recalibration", "evaluation")


class Stopwatch:
    """Seconds per named phase, call by call."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)

    def add(self, name: str, seconds: float) -> None:
        self.calls[name].append(float(seconds))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def total(self, name: str) -> float:
        return float(sum(self.calls.get(name, ())))

    def steady(self, name: str) -> float:
        """What the calls of ``name`` cost at the speed of a typical call (``n x median``); a single
        call is its own time."""
        calls = self.calls.get(name, ())
        return len(calls) * statistics.median(calls) if calls else 0.0

    def summary(self, wall: float) -> dict:
        """``{"wall", "compute", "phases": {name: {"seconds", "calls", "steady"}}}``: ``compute`` is the
        steady cost of the :data:`COMPUTE` phases."""
        phases = {name: {"seconds": self.total(name), "calls": len(c), "steady": self.steady(name)}
                  for name, c in sorted(self.calls.items())}
        return {"wall": float(wall), "compute": float(sum(self.steady(n) for n in COMPUTE)), "phases": phases}


def breakdown(summaries: list[dict]) -> dict[str, float]:
    """Seconds of the runs of ``summaries`` (:meth:`Stopwatch.summary` each) by what they were spent on:
    ``wall``; ``compute`` (train and eval steps at steady speed); ``first_calls`` (the first calls'
    extra time over a typical call: tracing, warm-up); ``epoch_end`` (checkpoints, backup, TensorBoard:
    the epoch-end work other than validation and recalibration); ``setup`` (the rest: datasets, model
    building, teacher loading, export)."""
    out = dict.fromkeys(("wall", "compute", "first_calls", "epoch_end", "setup"), 0.0)
    for s in summaries:
        seconds = {n: p.get("seconds", 0.0) for n, p in s.get("phases", {}).items()}
        steady = {n: p.get("steady", 0.0) for n, p in s.get("phases", {}).items()}
        first = sum(seconds.get(n, 0.0) - steady.get(n, 0.0) for n in COMPUTE)
        epoch_end = seconds.get("epoch_end", 0.0) - seconds.get("validation", 0.0) \
            - seconds.get("recalibration", 0.0)
        out["wall"] += s["wall"]
        out["compute"] += s["compute"]
        out["first_calls"] += first
        out["epoch_end"] += epoch_end
        out["setup"] += s["wall"] - s["compute"] - first - epoch_end
    return out


@contextmanager
def collections_timed(stopwatch: Stopwatch) -> Iterator[None]:
    """Adds the time of every Python garbage collection inside the block to ``gc`` (a full collection
    walks every object of the process, and a study's process holds many)."""
    started: list[float] = []

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            stopwatch.add(f"gc{info.get('generation', '')}", time.perf_counter() - started.pop())

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


__all__ = ["COMPUTE", "Stopwatch", "breakdown", "collections_timed"]
