"""The table of loss terms is the one source: config, options, losses and studies agree with it."""

from dataclasses import fields

from ird_tf.config import LossConfig
from ird_tf.experiments.cli import build_parser
from ird_tf.losses import TERMS as LOSS_TERMS
from ird_tf.terms import TERM_NAMES, TERMS, term_spec


def test_every_term_has_a_weight_an_option_and_a_function():
    assert set(TERM_NAMES) <= {f.name for f in fields(LossConfig)}
    options = {a.dest for a in build_parser("t")._actions}
    assert {f"alpha_{n}" for n in TERM_NAMES} <= options
    assert list(LOSS_TERMS) == list(TERM_NAMES)
    for spec in TERMS:
        assert LOSS_TERMS[spec.name].spec is spec and LOSS_TERMS[spec.name].needs_labels == spec.needs_labels
    assert [n for n in TERM_NAMES if term_spec(n).needs_labels] == ["ce"]
    assert LossConfig(ce=1.0, fm=0.0, at=2.0).weights() == {"ce": 1.0, "at": 2.0}
