"""Checks of values read from a study file: each error names the key (``sweep.seeds[1]``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

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




def build_section(cls: type, d: Any, section: str,
                  parsers: dict[str, Callable[[str, Any], Any]] | None = None) -> Any:
    """The dataclass ``cls`` from the mapping ``d`` of a study file's ``section``: an unknown key is an
    error listing the known ones; each value is checked against its field's type (numbers, integers,
    lists of them, strings, true/false, optional values), or by ``parsers[field](key, value)``. Every
    error names the key (``sweep.seeds[1]``)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{section}: expected a mapping of settings, got {type(d).__name__}")
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"unknown setting(s) {[f'{section}.{k}' for k in unknown]}; known: {known}")
    hints = get_type_hints(cls)
    parsers = parsers or {}
    return cls(**{k: (parsers[k] if k in parsers else _typed(hints[k]))(f"{section}.{k}", v)
                  for k, v in d.items()})


def _typed(hint: Any) -> Callable[[str, Any], Any]:
    """The check of a value of type ``hint``: ``(key, value) -> value``."""
    args = get_args(hint)
    if get_origin(hint) in (Union, UnionType) and type(None) in args:
        inner = _typed(next(a for a in args if a is not type(None)))
        return lambda key, v: None if v is None else inner(key, v)
    if get_origin(hint) is tuple:
        item = args[0]
        if item is float:
            return as_numbers
        if item is int:
            return as_integers
        return lambda key, v: tuple(str(x) for x in as_list(key, v))
    if hint is bool:
        return _as_bool
    return {int: as_integer, float: as_number, str: lambda key, v: str(v)}[hint]


def _as_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: expected true or false")
    return value


__all__ = ["as_integer", "as_integers", "as_list", "as_number", "as_numbers", "build_section"]
