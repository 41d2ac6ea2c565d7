"""The loss terms a Student can learn from: one TF-free table.

Each row gives the term's name (the ``LossConfig`` field, the ``--alpha-<name>`` option and the
study files' key), its label in tables and TensorBoard, what it needs from a batch, and its help text.
``LossConfig``, the command-line options, the study descriptions and the label-free checks derive from
it; ``ird_tf.losses`` attaches the functions. Adding a term: a row here and its function there (plus
its weight field in ``LossConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ird_tf.errors import ConfigError


@dataclass(frozen=True)
class TermSpec:
    name: str
    label: str
    needs_labels: bool
    needs_teacher: bool
    needs_maps: bool
    help: str


TERMS: tuple[TermSpec, ...] = (
    TermSpec("ce", "CE", True, False, False, "cross-entropy with the labels"),
    TermSpec("fm", "FM", False, True, False, "feature matching (RMSE of the feature maps)"),
    TermSpec("at", "AT+", False, True, True, "attention matching of Grad-CAM maps (AT+)"),
    TermSpec("zk_at", "AT (Zagoruyko)", False, True, False,
             "activation-based attention transfer (Zagoruyko)"),
    TermSpec("kd", "KD", False, True, False, "soft-label distillation (Hinton, T^2 KL)"),
    TermSpec("fmap", "FMap", False, True, False, "feature-map loss of DiPalma et al."),
)
TERM_NAMES: tuple[str, ...] = tuple(t.name for t in TERMS)
_BY_NAME = {t.name: t for t in TERMS}


def term_spec(name: str) -> TermSpec:
    """The row of ``name``; an unknown name is a ConfigError listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ConfigError(f"unknown loss term {name!r}; known terms: {sorted(TERM_NAMES)}") from None


__all__ = ["TERMS", "TERM_NAMES", "TermSpec", "term_spec"]
