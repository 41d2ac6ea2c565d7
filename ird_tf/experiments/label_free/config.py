"""The settings of the label-free study: the ``label_free:`` section of a study file (magnifications,
extra-pool ratios and seed, seeds, label-free methods, labeled references), parsed and checked key by
key, and read from and written to YAML. Kept apart from running the study so the settings can be loaded
and checked (and tested) without the data, the runner or the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ird_tf.config import MODES, PAPER_SEEDS, ConfigError, ExperimentConfig
from ird_tf.experiments.study import build_section, load_study_file, save_study_file
from ird_tf.experiments.sweep.config import NAME_RE, Method, default_methods, loss_settings
from ird_tf.terms import term_spec

SECTION = "label_free"


def default_label_free_methods() -> dict[str, dict[str, Any]]:
    return {"kd_fmap": {"kd": 1.0, "fmap": 1.0},
            "kd_fmap_at": {"kd": 1.0, "fmap": 1.0, "at": 10.0, "at_classes": "target"}}


def _methods(key: str, value: Any) -> dict[str, dict[str, Any]]:
    """Method name -> loss settings (term weights and options), each key checked against ``LossConfig``."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key}={value!r}: expected a mapping name -> loss settings")
    return {str(name): loss_settings(f"{key}.{name}", loss) for name, loss in value.items()}


@dataclass
class LabelFreeConfig:
    """The ``label_free:`` section (see the module docstring)."""

    name: str = "label_free"
    magnifications: tuple[float, ...] = (1.25, 0.625)
    extra_ratios: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0)
    pool_seed: int = 2024
    pool_dir: str | None = None
    mode: str = "upsampled"
    seeds: tuple[int, ...] = PAPER_SEEDS
    methods: dict[str, dict[str, Any]] = field(default_factory=default_label_free_methods)
    references: tuple[str, ...] = ("alone", "fm_at")

    def method(self, name: str) -> Method:
        return Method("distill", dict(self.methods[name]))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "magnifications": [float(m) for m in self.magnifications],
                "extra_ratios": [float(r) for r in self.extra_ratios], "pool_seed": int(self.pool_seed),
                "pool_dir": self.pool_dir, "mode": self.mode, "seeds": [int(s) for s in self.seeds],
                "methods": {n: dict(m) for n, m in self.methods.items()}, "references": list(self.references)}

    @classmethod
    def from_dict(cls, d: Any) -> LabelFreeConfig:
        """Parses the section; an unknown key or a value of the wrong type names the key."""
        return build_section(cls, d, SECTION, {"methods": _methods})

    def validate(self, base: ExperimentConfig) -> LabelFreeConfig:
        """Checks every setting against the base experiment; errors name the ``label_free.`` key."""
        if not NAME_RE.match(self.name):
            raise ConfigError(f"{SECTION}.name={self.name!r}: expected letters, digits and _ . + - "
                              "(a file name)")
        if self.mode not in MODES:
            raise ConfigError(f"{SECTION}.mode={self.mode!r} is not accepted; expected one of {list(MODES)}")
        for key, values in (("magnifications", self.magnifications), ("extra_ratios", self.extra_ratios),
                            ("seeds", self.seeds), ("methods", list(self.methods))):
            if not values:
                raise ConfigError(f"{SECTION}.{key} is empty; expected at least one")
            if len(set(values)) != len(values):
                raise ConfigError(f"{SECTION}.{key}={list(values)} has duplicates")
        if min(self.extra_ratios) < 0:
            raise ConfigError(f"{SECTION}.extra_ratios={list(self.extra_ratios)}: expected numbers >= 0")
        if max(self.extra_ratios) > 0 and self.pool_dir is None:
            if base.data.source != "synthetic":
                raise ConfigError(f"{SECTION}.extra_ratios={list(self.extra_ratios)}: with data.source="
                                  f"{base.data.source!r} the extra unlabeled images come from "
                                  f"{SECTION}.pool_dir (--pool DIR, a folder of unlabeled patches), which "
                                  "is not set; or use extra_ratios: [0]")
            if self.pool_seed == base.data.synthetic.seed:
                raise ConfigError(f"{SECTION}.pool_seed={self.pool_seed} is the benchmark's own seed "
                                  "(data.synthetic.seed): the pool would repeat its patients; pick another")
        for mag in self.magnifications:
            try:
                replace(base.data, student_mag=mag, mode=self.mode).validate()
            except ConfigError as e:
                raise ConfigError(f"{SECTION}.magnifications: {mag:g} is not accepted: {e}") from e
        for name in self.methods:
            key = f"{SECTION}.methods.{name}"
            if not NAME_RE.match(name) or name == "teacher" or name in self.references:
                raise ConfigError(f"{key}: not a usable method name (letters, digits, _ . + -; not 'teacher' "
                                  "nor a reference's name)")
            loss = self.method(name).loss_config(base.loss)
            try:
                loss.validate()
            except ConfigError as e:
                raise ConfigError(f"{key}: {e}") from e
            needs = [t for t in loss.weights() if term_spec(t).needs_labels]
            if needs:
                raise ConfigError(f"{key}.{needs[0]}={getattr(loss, needs[0]):g}: label-free students have "
                                  f"no labels; the {needs} term(s) must be 0 (or left out)")
        builtin = default_methods()
        unknown = [r for r in self.references if r not in builtin]
        if unknown:
            raise ConfigError(f"{SECTION}.references: {unknown} are not sweep methods {list(builtin)}")
        return self


def load_study(path: str | Path) -> tuple[ExperimentConfig, LabelFreeConfig]:
    """(base experiment config, label-free settings) from a study file (not yet validated)."""
    return load_study_file(path, SECTION, "label-free", LabelFreeConfig.from_dict)


def save_study(path: str | Path, base: ExperimentConfig, study: LabelFreeConfig, header: str = "") -> Path:
    """Writes a study file that :func:`load_study` reads back to equal objects."""
    return save_study_file(path, base, SECTION, study.to_dict(), header)
