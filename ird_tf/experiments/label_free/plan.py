"""The runs of the label-free study: per seed the teacher, then per magnification the labeled
reference students (the sweep's own runs) and every label-free method x unlabeled set, each with its
epochs from the step budget and the run directory ``distill`` would use. Shared by the runner, the
dry run and the tables, which all walk the same list of runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ird_tf.config import ExperimentConfig
from ird_tf.experiments.label_free.config import LabelFreeConfig
from ird_tf.experiments.label_free.sets import UnlabeledSet, budget_steps, epochs_for, unlabeled_sets
from ird_tf.experiments.sweep.config import SweepConfig, default_methods, run_config, teacher_config
from ird_tf.experiments.sweep.plan import Planned as SweepRun
from ird_tf.runs import student_dir, teacher_dir


@dataclass(frozen=True)
class Planned(SweepRun):
    """A sweep run plus its ``group`` (teacher / reference: a labeled sweep student / label_free) and,
    for a label-free run, its unlabeled set."""

    group: str = "label_free"
    uset: UnlabeledSet | None = None

    def label(self) -> str:
        extra = f" +{self.uset.ratio:g}x extra" if self.uset is not None else ""
        return f"{self.mag:g}x {self.method}{extra} seed {self.seed}"


def plan(base: ExperimentConfig, study: LabelFreeConfig, n_train: int) -> list[Planned]:
    """Per seed: the teacher; per magnification the references, then every method x ratio."""
    refs = SweepConfig(name=study.name, magnifications=study.magnifications, seeds=study.seeds,
                       methods={r: default_methods()[r] for r in study.references}, mode=study.mode)
    sets = unlabeled_sets(base, study, n_train)
    budget = budget_steps(base, n_train)
    out = []
    for seed in study.seeds:
        tcfg = teacher_config(base, seed)
        out.append(Planned("teacher", "teacher", float(base.data.teacher_mag), seed, tcfg, teacher_dir(tcfg),
                           group="teacher"))
        for mag in study.magnifications:
            for name, method in refs.methods.items():
                cfg = run_config(base, refs, mag, name, seed)
                out.append(Planned(name, method.kind, float(mag), seed, cfg, student_dir(cfg, method.kind),
                                   group="reference"))
            for name in study.methods:
                for ratio in study.extra_ratios:
                    s = sets[ratio]
                    cfg = ExperimentConfig(
                        data=replace(base.data, student_mag=float(mag), mode=study.mode,
                                     unlabeled=str(s.folder)),
                        model=base.model,
                        loss=study.method(name).loss_config(base.loss),
                        optim=replace(base.optim, epochs=epochs_for(s.size, base.data.batch_size, budget)),
                        run=replace(base.run, seed=int(seed), name=None),
                    ).validate()
                    out.append(Planned(name, "distill", float(mag), seed, cfg, student_dir(cfg, "distill"),
                                       group="label_free", uset=s))
    return out
