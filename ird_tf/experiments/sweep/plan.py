"""The runs of a resolution sweep: per seed the teacher, then every magnification x method, each with
its experiment config and the run directory ``distill`` would use. Shared by the sweep runner, its
tables and the attention figure, which all walk the same list of runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ird_tf.config import ExperimentConfig
from ird_tf.errors import ConfigError
from ird_tf.experiments.sweep.config import Method, SweepConfig, run_config, teacher_config
from ird_tf.runs import student_dir, teacher_dir
from ird_tf.runs.tuning import candidate_config, read_record, tuning_dir


@dataclass(frozen=True)
class Planned:
    """One run of the sweep: ``method`` is "teacher" or a method name; ``kind`` teacher/distill/alone."""

    method: str
    kind: str
    mag: float
    seed: int
    cfg: ExperimentConfig = field(compare=False)
    run_dir: Path = field(compare=False)

    def label(self) -> str:
        return f"{self.mag:g}x {self.method} seed {self.seed}"


def plan(base: ExperimentConfig, sweep: SweepConfig) -> list[Planned]:
    """Per seed: the teacher, then every magnification x method, in the order they run."""
    out = []
    for seed in sweep.seeds:
        tcfg = teacher_config(base, seed)
        out.append(Planned("teacher", "teacher", float(base.data.teacher_mag), seed, tcfg, teacher_dir(tcfg)))
        for mag in sweep.magnifications:
            for name, method in sweep.methods.items():
                cfg = run_config(base, sweep, mag, name, seed)
                if method.kind == "tuned":
                    cfg, run_dir = tuned_run(cfg, method)
                else:
                    run_dir = student_dir(cfg, method.kind)
                out.append(Planned(name, method.kind, float(mag), seed, cfg, run_dir))
    return out


def tuning_folder(cfg: ExperimentConfig, method: Method) -> Path:
    """Where a tuned method's record lives for ``cfg`` (the one ``python -m ird_tf.experiments.tune``
    writes for the same settings and grid)."""
    return tuning_dir(cfg, method.tuning_grid)


def tuned_run(cfg: ExperimentConfig, method: Method) -> tuple[ExperimentConfig, Path]:
    """A tuned method's run: once its choice is recorded, the chosen candidate's config and run
    directory; before, the config without distillation terms and the tuning folder (no
    ``result.json``: pending)."""
    folder = tuning_folder(cfg, method)
    if not (folder / "tuning.json").is_file():
        return cfg, folder
    try:
        record = read_record(folder, option=str(folder))
    except ConfigError:
        return cfg, folder
    chosen = candidate_config(cfg, record["choice"]["weights"])
    return chosen, student_dir(chosen, "distill")
