"""Study files: a complete experiment config plus one section of study settings, in YAML."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ird_tf.config import ExperimentConfig, read_yaml_mapping
from ird_tf.errors import ConfigError
from ird_tf.files import write_text


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
    return write_text(path, header + yaml.safe_dump({**base.to_dict(), section: settings}, sort_keys=False))


__all__ = ["load_study_file", "save_study_file"]
