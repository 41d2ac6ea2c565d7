"""The settings of a resolution sweep: the ``sweep:`` section of a sweep file (magnifications, seeds,
methods and their losses, localisation and cost options), parsed and checked key by key, read from and
written to YAML, and turned into the experiment config of each run. Kept apart from running the sweep
so the label-free study can reuse the sweep's methods and run configs without its runner or tables.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ird_tf.config import (
    AT_WEIGHTINGS,
    BACKBONES,
    MODES,
    PAPER_SEEDS,
    ConfigError,
    ExperimentConfig,
    LossConfig,
)
from ird_tf.experiments.study import as_numbers, build_section, load_study_file, save_study_file
from ird_tf.runs.tuning import DEFAULT_GRID, GRID_TERMS, check_grid
from ird_tf.terms import TERM_NAMES, term_spec

DEFAULT_MAGNIFICATIONS = (5.0, 2.5, 1.25, 0.625)
KINDS = ("distill", "alone", "tuned")
LOCALISED_BY_DEFAULT = ("alone", "fm", "fm_at")
LOSS_FIELDS = tuple(f.name for f in fields(LossConfig))
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
KEEP_GRID = "keep-grid"  # a method's student_backbone: <backbone>_keep<log2 factor> (the Teacher's grid)
MAX_KEEP = {"vgg_tiny": 3, "vgg16": 4}


def student_backbone_for(value: str | None, backbone: str, factor: float) -> str | None:
    """A method's ``student_backbone`` at one factor: None (the Teacher's), a registered name, or
    ``keep-grid``: ``<backbone>_keep<k>`` with k = log2(factor) (at most the backbone's pools)."""
    if value != KEEP_GRID:
        return value
    if backbone not in MAX_KEEP:
        raise ConfigError(f"student_backbone {KEEP_GRID!r} needs model.backbone in {list(MAX_KEEP)}")
    k = min(int(round(math.log2(factor))), MAX_KEEP[backbone])
    return backbone if k < 1 else f"{backbone}_keep{k}"


@dataclass
class Method:
    """How one student is trained: ``kind`` distill (from the teacher), alone (labels only) or tuned
    (distilled with the weights chosen on the validation split from ``grid``, per seed and
    magnification: ``python -m ird_tf.experiments.tune``), and its loss term weights and options (see
    the module docstring)."""

    kind: str = "distill"
    loss: dict[str, Any] = field(default_factory=dict)
    # the student's input mode (None: the sweep's) and backbone (None: the Teacher's; a registered name,
    # or keep-grid: <backbone>_keep<log2 factor>, the Teacher's feature grid)
    mode: str | None = None
    student_backbone: str | None = None
    # kind tuned: the weights tried per distillation term (None: tune's default grid)
    grid: dict[str, tuple[float, ...]] | None = None
    # the student's epochs (None: the preset's optim.epochs); a native Student's epoch costs a fraction
    # of an upsampled one's, so it can train longer for the same training compute
    epochs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "loss": dict(self.loss)}
        if self.mode is not None:
            d["mode"] = self.mode
        if self.student_backbone is not None:
            d["student_backbone"] = self.student_backbone
        if self.grid is not None:
            d["grid"] = {k: [float(v) for v in vs] for k, vs in self.grid.items()}
        if self.epochs is not None:
            d["epochs"] = int(self.epochs)
        return d

    @property
    def tuning_grid(self) -> dict[str, tuple[float, ...]]:
        """The grid of a tuned method (checked; tune's default when not given)."""
        return check_grid(dict(DEFAULT_GRID) if self.grid is None else dict(self.grid))

    def loss_config(self, base: LossConfig) -> LossConfig:
        """``base``'s options with this method's terms (all others off) and option changes; a tuned
        method's: CE 1 and no distillation term (each candidate of its grid adds its own)."""
        terms = {t: 0.0 for t in TERM_NAMES}
        if self.kind in ("alone", "tuned"):
            terms["ce"] = 1.0
        return replace(base, **{**terms, **self.loss})


def builtin_methods() -> dict[str, Method]:
    """The methods a sweep file may name in a list: the default ones and ``tuned`` (tune's default grid)."""
    return {**default_methods(), "tuned": Method("tuned")}


def default_methods() -> dict[str, Method]:
    return {
        "alone": Method("alone"),
        "fm": Method("distill", {"ce": 1.0, "fm": 0.1}),
        "fm_at": Method("distill", {"ce": 1.0, "fm": 0.1, "at": 10.0}),
        "kd": Method("distill", {"ce": 1.0, "kd": 1.0}),
    }


@dataclass
class SweepConfig:
    name: str = "sweep"
    magnifications: tuple[float, ...] = DEFAULT_MAGNIFICATIONS
    methods: dict[str, Method] = field(default_factory=default_methods)
    seeds: tuple[int, ...] = PAPER_SEEDS
    mode: str = "upsampled"
    localisation: tuple[str, ...] | None = None
    localisation_weighting: str = "gradcam"
    cost: bool | None = None
    cost_seconds: float = 2.0

    @property
    def localised(self) -> tuple[str, ...]:
        """Methods whose runs get localisation scores (``None``: alone, fm, fm_at if present)."""
        if self.localisation is None:
            return tuple(m for m in LOCALISED_BY_DEFAULT if m in self.methods)
        return self.localisation

    @property
    def measures_cost(self) -> bool:
        return self.mode == "native" if self.cost is None else bool(self.cost)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "magnifications": [float(m) for m in self.magnifications],
            "methods": {n: m.to_dict() for n, m in self.methods.items()},
            "seeds": [int(s) for s in self.seeds], "mode": self.mode,
            "localisation": None if self.localisation is None else list(self.localisation),
            "localisation_weighting": self.localisation_weighting, "cost": self.cost,
            "cost_seconds": self.cost_seconds,
        }

    @classmethod
    def from_dict(cls, d: Any) -> SweepConfig:
        """Parses the ``sweep:`` section; an unknown key or a value of the wrong type names the key."""
        return build_section(cls, d, "sweep", {"methods": lambda _key, v: parse_methods(v), "cost": _cost})

    def validate(self, base: ExperimentConfig) -> SweepConfig:
        """Checks every setting against the base experiment; errors name the ``sweep.`` key."""
        if not NAME_RE.match(self.name):
            raise ConfigError(f"sweep.name={self.name!r}: expected letters, digits and _ . + - (a file name)")
        if self.mode not in MODES:
            raise ConfigError(f"sweep.mode={self.mode!r} is not accepted; expected one of {list(MODES)}")
        for key, values in (("magnifications", self.magnifications), ("seeds", self.seeds),
                            ("methods", list(self.methods))):
            if not values:
                raise ConfigError(f"sweep.{key} is empty; expected at least one")
            if len(set(values)) != len(values):
                raise ConfigError(f"sweep.{key}={list(values)} has duplicates")
        for mag in self.magnifications:
            try:
                replace(base.data, student_mag=mag, mode=self.mode).validate()
            except ConfigError as e:
                raise ConfigError(f"sweep.magnifications: {mag:g} is not accepted: {e}") from e
        for name, method in self.methods.items():
            if not NAME_RE.match(name) or name == "teacher":
                raise ConfigError(f"sweep.methods: {name!r} is not a usable method name (letters, digits, "
                                  "_ . + -; 'teacher' is reserved)")
            try:
                method.loss_config(base.loss).validate()
                if method.kind == "tuned":
                    method.tuning_grid  # noqa: B018 (checked)
            except ConfigError as e:
                raise ConfigError(f"sweep.methods.{name}: {e}") from e
        missing = [m for m in self.localised if m not in self.methods]
        if missing:
            raise ConfigError(f"sweep.localisation names {missing}, which are not in sweep.methods "
                              f"{list(self.methods)}")
        if self.localisation_weighting not in AT_WEIGHTINGS:
            raise ConfigError(f"sweep.localisation_weighting={self.localisation_weighting!r} is not "
                              f"accepted; expected one of {list(AT_WEIGHTINGS)}")
        if self.cost_seconds <= 0:
            raise ConfigError(f"sweep.cost_seconds={self.cost_seconds!r}: expected a number > 0")
        return self


def _cost(key: str, value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: expected true, false or null (= native only)")
    return value


def loss_settings(key: str, value: Any) -> dict[str, Any]:
    """A method's loss settings (term weights and options): a mapping whose keys are ``LossConfig``'s."""
    loss = value or {}
    if not isinstance(loss, dict):
        raise ConfigError(f"{key}={loss!r}: expected a mapping of loss settings")
    bad = sorted(set(loss) - set(LOSS_FIELDS))
    if bad:
        raise ConfigError(f"unknown setting(s) {[f'{key}.{k}' for k in bad]}; known: {list(LOSS_FIELDS)}")
    return dict(loss)


def parse_methods(value: Any) -> dict[str, Method]:
    """``{name: {kind, loss, mode, student_backbone, grid, epochs}}``, or a list of built-in method names
    (alone, fm, fm_at, kd, tuned)."""
    builtin = builtin_methods()
    if isinstance(value, list):
        unknown = [n for n in value if n not in builtin]
        if unknown:
            raise ConfigError(f"sweep.methods: {unknown} are not built-in methods {list(builtin)}; "
                              "define them as a mapping name -> {kind, loss}")
        return {n: builtin[n] for n in value}
    if not isinstance(value, dict):
        raise ConfigError(f"sweep.methods={value!r}: expected a mapping name -> {{kind, loss}}")
    out = {}
    for name, spec in value.items():
        key = f"sweep.methods.{name}"
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise ConfigError(f"{key}={spec!r}: expected a mapping with 'kind' and/or 'loss'")
        known = ["kind", "loss", "mode", "student_backbone", "grid", "epochs"]
        unknown = sorted(set(spec) - set(known))
        if unknown:
            raise ConfigError(f"unknown setting(s) {[f'{key}.{k}' for k in unknown]}; known: {known}")
        kind = spec.get("kind", "distill")
        if kind not in KINDS:
            raise ConfigError(f"{key}.kind={kind!r} is not accepted; expected one of {list(KINDS)}")
        loss = loss_settings(f"{key}.loss", spec.get("loss"))
        terms = [t for t in TERM_NAMES if t in loss and t != "ce" and loss[t]]
        if kind == "alone" and terms:
            raise ConfigError(f"{key}: kind 'alone' trains with cross-entropy only; it cannot use the "
                              f"teacher terms {terms}")
        if kind == "alone" and "ce" in loss:
            raise ConfigError(f"{key}.loss.ce: kind 'alone' always has ce = 1")
        grid = _grid(f"{key}.grid", spec.get("grid"), kind)
        if kind == "tuned" and terms:
            raise ConfigError(f"{key}.loss: kind 'tuned' takes the distillation weights from {key}.grid; "
                              f"leave out {terms}")
        mode, backbone = spec.get("mode"), spec.get("student_backbone")
        if mode is not None and mode not in MODES:
            raise ConfigError(f"{key}.mode={mode!r} is not accepted; expected one of {list(MODES)}")
        if backbone is not None and backbone not in (*BACKBONES, KEEP_GRID):
            raise ConfigError(f"{key}.student_backbone={backbone!r} is not accepted; expected one of "
                              f"{[*BACKBONES, KEEP_GRID]}")
        epochs = spec.get("epochs")
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ConfigError(f"{key}.epochs={epochs!r}: expected a whole number >= 1 (or leave it out: "
                              "the preset's optim.epochs)")
        out[str(name)] = Method(kind, dict(loss), mode, backbone, grid, epochs)
    return out


def _grid(key: str, value: Any, kind: str) -> dict[str, tuple[float, ...]] | None:
    """A tuned method's grid: ``{term: [weights]}`` over the distillation terms, each holding 0."""
    if value is None:
        return None
    if kind != "tuned":
        raise ConfigError(f"{key}: only kind 'tuned' has a grid")
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{key}={value!r}: expected a mapping term -> list of weights, e.g. "
                          "{fm: [0, 0.1], at: [0, 1, 10]}")
    bad = sorted(set(value) - set(GRID_TERMS))
    if bad:
        raise ConfigError(f"{key}: {bad} are not distillation terms; known: {list(GRID_TERMS)}")
    grid = {t: as_numbers(f"{key}.{t}", v) for t, v in value.items()}
    return check_grid(grid, where=lambda t: f"{key}.{t}")


def load_sweep(path: str | Path) -> tuple[ExperimentConfig, SweepConfig]:
    """(base experiment config, sweep settings) from a sweep file (not yet validated)."""
    return load_study_file(path, "sweep", "sweep", SweepConfig.from_dict)


def save_sweep(path: str | Path, base: ExperimentConfig, sweep: SweepConfig, header: str = "") -> Path:
    """Writes a sweep file that :func:`load_sweep` reads back to equal objects."""
    return save_study_file(path, base, "sweep", sweep.to_dict(), header)


def teacher_config(base: ExperimentConfig, seed: int) -> ExperimentConfig:
    """The experiment config of a study's teacher run for ``seed``."""
    return ExperimentConfig(base.data, base.model, base.loss, base.optim,
                            replace(base.run, seed=int(seed), name=None))


def run_config(base: ExperimentConfig, sweep: SweepConfig, mag: float, method: str, seed: int
               ) -> ExperimentConfig:
    """The experiment config of one student run (validated)."""
    m = sweep.methods[method]
    data = replace(base.data, student_mag=float(mag), mode=m.mode or sweep.mode)
    backbone = student_backbone_for(m.student_backbone, base.model.backbone, data.factor)
    return ExperimentConfig(
        data=data,
        model=replace(base.model, student_backbone=backbone),
        loss=m.loss_config(base.loss),
        optim=base.optim if m.epochs is None else replace(base.optim, epochs=int(m.epochs)),
        run=replace(base.run, seed=int(seed), name=None),
    ).validate()


def describe(method: Method, base: LossConfig) -> str:
    """``CE + 0.1 FM + 10 AT+ (AT: minmax norm, l2 distance, ...)`` — for the table header; a method's own
    number of epochs follows (``..., 40 epochs``)."""
    text = _describe_loss(method, base)
    return text if method.epochs is None else f"{text}, {method.epochs} epochs"


def _describe_loss(method: Method, base: LossConfig) -> str:
    if method.kind == "alone":
        return "student trained alone, CE only"
    if method.kind == "tuned":
        grid = " x ".join(f"{term_spec(t).label} {{{', '.join(f'{v:g}' for v in vs)}}}"
                          for t, vs in method.tuning_grid.items())
        return f"CE + weights chosen on the validation split per seed and magnification from {grid}"
    loss = method.loss_config(base)
    labels = {t: term_spec(t).label for t in loss.weights()}
    parts = [(labels[t] if w == 1 else f"{w:g} {labels[t]}") for t, w in loss.weights().items()]
    text = " + ".join(parts)
    if loss.at:
        text += (f" (AT: {loss.at_norm} norm, {loss.at_distance} distance, {loss.at_weighting} weighting, "
                 f"{loss.at_classes} classes)")
    if loss.kd:
        text += f" (KD: T = {loss.kd_temperature:g})"
    return text


def localisation_key(sweep: SweepConfig) -> dict:
    """The key of the localisation scores a sweep caches in, and reads from, each run directory."""
    return {"split": "test", "classes": "true", "weighting": sweep.localisation_weighting}
