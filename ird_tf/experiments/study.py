"""What every multi-run study (the resolution sweep, the label-free study) shares: checks of values read
from a study file, the seeds a command line selects, the commit stamped on a table, and the execution
of one planned run (trained, resumed or reused) with progress lines.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from ird_tf.config import ConfigError, ExperimentConfig, read_yaml_mapping
from ird_tf.experiments.runs import RunResult, read_result


# ------------------------------------------------------------------------------- values of a study file
def as_list(key: str, value: Any) -> list:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{key}={value!r}: expected a list")
    return list(value)


def as_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}={value!r}: expected a number")
    return float(value)


def as_integer(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value!r}: expected an integer")
    return value


def as_numbers(key: str, value: Any) -> tuple[float, ...]:
    """A list of numbers; an error names the entry (``key[i]``)."""
    return tuple(as_number(f"{key}[{i}]", v) for i, v in enumerate(as_list(key, value)))


def as_integers(key: str, value: Any) -> tuple[int, ...]:
    """A list of integers; an error names the entry (``key[i]``)."""
    return tuple(as_integer(f"{key}[{i}]", v) for i, v in enumerate(as_list(key, value)))


def select_seeds(seeds: Sequence[int], first: int | None, quick: bool, setting: str) -> tuple[int, ...]:
    """The seeds a run of a study uses: the first ``first`` (``--seeds N``), or only the first with
    ``--quick`` when ``--seeds`` is not given."""
    if first is not None:
        if not 1 <= first <= len(seeds):
            raise ConfigError(f"--seeds {first}: expected 1..{len(seeds)} ({setting} = {list(seeds)})")
        return tuple(seeds[:first])
    return tuple(seeds[:1]) if quick else tuple(seeds)


def load_study_file(path: str | Path, section: str, what: str, parse: Callable[[Any], Any]
                    ) -> tuple[ExperimentConfig, Any]:
    """(base experiment config, ``parse(section)``) from a study file: the ``ExperimentConfig`` sections
    plus one ``<section>:`` of study settings (not yet validated). Errors name the file."""
    path = Path(path)
    d = read_yaml_mapping(path, f"{what} config file")
    if section not in d:
        raise ConfigError(f"{what} config file {path}: expected the experiment sections and a "
                          f"'{section}:' section")
    study = d.pop(section)
    try:
        return ExperimentConfig.from_dict(d), parse(study)
    except ConfigError as e:
        raise ConfigError(f"{what} config file {path}: {e}") from e


def save_study_file(path: str | Path, base: ExperimentConfig, section: str, settings: dict,
                    header: str = "") -> Path:
    """Writes a study file that :func:`load_study_file` reads back to equal objects."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({**base.to_dict(), section: settings}, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------- reporting
def git_commit() -> str:
    """Short commit of the working directory's checkout (``+dirty`` when tracked files other than the
    result files differ from it), or "unknown" outside git."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=False)

    try:
        out = git("rev-parse", "--short", "HEAD")
        if out.returncode != 0 or not out.stdout.strip():
            return "unknown"
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!experiments/results")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def nan_if_none(x: Any) -> float:
    return float("nan") if x is None else float(x)


# ------------------------------------------------------------------------------------ one planned run
class PlannedRun(Protocol):
    kind: str
    cfg: ExperimentConfig
    run_dir: Path

    def label(self) -> str: ...


def prepare_run(cfg: ExperimentConfig) -> None:
    """A clean Keras state per run (memory stays flat over dozens of runs); seed and precision again
    because ``clear_session`` resets the global dtype policy."""
    import gc

    import keras

    from ird_tf.training.runtime import set_precision, set_seed

    keras.backend.clear_session()
    gc.collect()
    set_seed(cfg.run.seed)
    set_precision(cfg.run.precision)


def execute(p: PlannedRun, splits, strategy, *, tag: str, start: float, say: Callable[[str], None]
            ) -> tuple[RunResult | None, bool, str | None]:
    """Trains, resumes or reuses one planned run: ``(result, reused, failure)``. A diverged run is
    reported as ``failure`` (the study goes on without it); any other error stops the study."""
    from ird_tf.errors import TrainingDiverged
    from ird_tf.experiments.runs import run_student, run_teacher

    found = read_result(p.run_dir) is not None
    status = "reused" if found else "resuming" if (p.run_dir / "backup").is_dir() else "training"
    say(f"run {tag}: {status} ({p.run_dir}), elapsed {fmt_time(time.time() - start)}")
    t0 = time.time()
    prepare_run(p.cfg)
    try:
        if p.kind == "teacher":
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


__all__ = [
    "as_integer", "as_integers", "as_list", "as_number", "as_numbers", "execute", "fmt_time", "git_commit",
    "load_study_file", "nan_if_none", "prepare_run", "save_study_file", "select_seeds",
]
