"""One planned run of a study, trained, resumed or reused, with its progress lines; and the loop over
all of them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from ird_tf.config import ExperimentConfig
from ird_tf.errors import TrainingDiverged
from ird_tf.experiments.study.report import fmt_time, nan_if_none
from ird_tf.runs import RunResult, pool, read_result


class PlannedRun(Protocol):
    kind: str
    cfg: ExperimentConfig
    run_dir: Path

    def label(self) -> str: ...


def prepare_run(cfg: ExperimentConfig) -> None:
    """Seed and precision again before a run, so its result does not depend on the runs before it.

    Not ``keras.backend.clear_session``: it clears TensorFlow's kernel cache (as ``tf.random.set_seed``
    does, see ``training.runtime.set_seed``), so the compiled functions of the models a study keeps
    (``runs.pool``) were instantiated again in every run, and its garbage collection walks every object
    of the process (0.35 s a run). What else it resets does not act on a run: every classifier layer is
    named explicitly, weight files are keyed by layer order within each class, and the dtype policy is
    set here."""
    from ird_tf.training.runtime import set_precision, set_seed

    set_seed(cfg.run.seed)
    set_precision(cfg.run.precision)


Trainer = Callable[[PlannedRun, object, object], RunResult]  # (run, splits, strategy) -> result


def execute(p: PlannedRun, splits, strategy, *, tag: str, start: float, say: Callable[[str], None],
            trainers: dict[str, Trainer] | None = None) -> tuple[RunResult | None, bool, str | None]:
    """Trains, resumes or reuses one planned run: ``(result, reused, failure)``. ``trainers``: a study's
    own task for runs of some kinds (the sweep's ``tuned``); the others are teachers or students. A
    diverged run is reported as ``failure`` (the study goes on without it); any other error stops the
    study."""
    from ird_tf.runs import run_student, run_teacher

    found = read_result(p.run_dir) is not None
    status = "reused" if found else "resuming" if (p.run_dir / "backup").is_dir() else "training"
    say(f"run {tag}: {status} ({p.run_dir}), elapsed {fmt_time(time.time() - start)}")
    t0 = time.time()
    if not found:  # a finished run is only read: it builds no model to seed
        prepare_run(p.cfg)
    try:
        if trainers and p.kind in trainers:
            result = trainers[p.kind](p, splits, strategy)
        elif p.kind == "teacher":
            result = run_teacher(p.cfg, splits, strategy)
        else:
            result, _ = run_student(p.cfg, splits, strategy, kind=p.kind)
    except TrainingDiverged as e:
        say(f"run {tag}: DIVERGED ({e}); going on without it")
        return None, found, f"{p.label()}: {e}"
    if not found:
        test = result.metrics.get("test", {})
        say(f"run {tag}: done in {fmt_time(time.time() - t0)}: test bal. acc. "
            f"{nan_if_none(test.get('balanced_accuracy')):.3f}, kappa {nan_if_none(test.get('kappa')):.3f}")
    return result, found, None


def run_all(planned: Sequence[PlannedRun], splits, strategy, *, say: Callable[[str], None], start: float,
            header: dict, after: Callable[[PlannedRun, bool, str], None],
            trainers: dict[str, Trainer] | None = None) -> dict:
    """Runs (or reuses) every planned run in order, counting them in ``header`` (``trained``,
    ``reused``, ``failed``; ``timings``: where the trained runs spent their time) and calling
    ``after(run, reused, tag)`` after each one that finished."""
    header.setdefault("trained", 0)
    header.setdefault("reused", 0)
    header.setdefault("failed", [])
    header.setdefault("timings", [])
    with pool.keeping():  # a run with an earlier run's settings but its seed trains that run's model
        for i, p in enumerate(planned, 1):
            tag = f"{i}/{len(planned)} {p.label()}"
            result, found, failure = execute(p, splits, strategy, tag=tag, start=start, say=say,
                                             trainers=trainers)
            if failure:
                header["failed"].append(failure)
                continue
            header["reused" if found else "trained"] += 1
            if not found and result.timing:
                header["timings"].append(result.timing)
            after(p, found, tag)
    return header
