"""The project's exception types, in one place below every floor.

Each says whose mistake it is, so the command line can answer it without a traceback: a setting
(exit 2), the data (exit 1), or a run that diverged (exit 1, its good checkpoints kept). Messages name
the option, file, row or run and what was expected.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has a value outside what it accepts; the message names the setting."""


class WeightsError(ConfigError):
    """Initial weights (``model.weights`` / ``--weights``) cannot be loaded; the message names the
    file or the source and what was expected."""


class DataError(ValueError):
    """Bad input data: the message names the file, folder or row and says what was expected."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the run stopped and kept its last good checkpoints."""


__all__ = ["ConfigError", "DataError", "TrainingDiverged", "WeightsError"]
