"""Paired comparisons over seeds: against scipy's paired t-test and a hand-worked example."""

import math

import numpy as np
import pytest
from scipy import stats

from ird_tf.evaluation.paired import compare, gap_closed, paired_cell, paired_difference, plot_paired


def test_hand_worked_example():
    # d = (0.02, 0.04, 0.06): mean 0.04, sd 0.02, se 0.02/sqrt(3), t_{0.975, 2} = 4.302653
    a = {22: 0.82, 32: 0.84, 43: 0.86}
    b = {22: 0.80, 32: 0.80, 43: 0.80}
    p = paired_difference(a, b)
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert p.n == 3 and p.mean == pytest.approx(0.04)
    assert (p.low, p.high) == (pytest.approx(0.04 - half, abs=1e-6), pytest.approx(0.04 + half, abs=1e-6))
    assert p.low == pytest.approx(-0.009683, abs=1e-6)  # the interval holds 0
    assert not p.excludes_zero and paired_cell(p) == "+0.040 [-0.010, +0.090]"


def test_interval_is_scipys_paired_t_interval():
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.05, 5)
    b = a - rng.normal(0.03, 0.01, 5)
    seeds = [22, 32, 43, 52, 62]
    p = paired_difference(dict(zip(seeds, a, strict=True)), dict(zip(seeds, b, strict=True)))
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert p.mean == pytest.approx(float(np.mean(a - b)))
    assert (p.low, p.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert p.excludes_zero and paired_cell(p).endswith(" *")


def test_pairs_only_common_finite_seeds_and_one_seed_has_no_interval():
    p = paired_difference({22: 0.9, 32: 0.7, 43: float("nan")}, {22: 0.8, 43: 0.5, 52: 0.1})
    assert p.n == 1 and p.mean == pytest.approx(0.1) and p.low is None and not p.excludes_zero
    assert paired_cell(p) == "+0.100 (1 seed)"
    assert paired_difference({22: 0.9}, {32: 0.8}) is None and paired_cell(None) == "n/a"


def test_gap_closed_and_compare():
    teacher = {22: 0.9, 32: 0.9}
    alone = {22: 0.7, 32: 0.8}
    fm = {22: 0.8, 32: 0.8}
    assert gap_closed(fm, alone, teacher) == pytest.approx(0.05 / 0.15)
    assert gap_closed(fm, alone, {22: 0.7, 32: 0.8}) is None  # no gap
    rows = compare({"alone": alone, "fm": fm, "fm_at": {22: 0.85, 32: 0.9}}, teacher)
    assert rows["alone"]["vs_alone"] is None and rows["alone"]["gap_closed"] is None
    assert rows["fm"]["vs_fm"] is None and rows["fm"]["vs_alone"].mean == pytest.approx(0.05)
    assert rows["fm_at"]["vs_fm"].mean == pytest.approx(0.075)
    assert rows["fm_at"]["gap_closed"] == pytest.approx(0.125 / 0.15)


def test_plot_is_written(tmp_path):
    p = paired_difference({1: 0.8, 2: 0.9, 3: 0.85}, {1: 0.7, 2: 0.8, 3: 0.8})
    out = plot_paired(tmp_path / "p.png", {"5x": {"fm": {"alone": p}, "kd": {"alone": p, "fm": None}},
                                           "2.5x": {"fm": {"alone": None}}}, title="t")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert not [f for f in tmp_path.iterdir() if f.name != "p.png"]
