"""Checks of values read from a study file: each error names the key (``sweep.seeds[1]``)."""

from __future__ import annotations

from typing import Any

from ird_tf.errors import ConfigError


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


__all__ = ["as_integer", "as_integers", "as_list", "as_number", "as_numbers"]
