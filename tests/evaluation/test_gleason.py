"""Slide-level Gleason grading, worked by hand: primary = most extensive, secondary = highest remaining
grade whatever its extent (biopsies), grade groups from the score."""

import pytest

from ird_tf.errors import ConfigError
from ird_tf.evaluation.gleason import grade_group, grade_slide


@pytest.mark.parametrize(("p", "s", "group"), [
    (3, 3, 1), (3, 4, 2), (4, 3, 3), (4, 4, 4), (3, 5, 4), (5, 3, 4), (4, 5, 5), (5, 4, 5), (5, 5, 5),
])
def test_grade_groups(p, s, group):
    assert grade_group(p, s) == group


@pytest.mark.parametrize(("extents", "label", "group"), [
    ({}, "benign", None),
    ({3: 10}, "3+3=6", 1),
    ({3: 70, 4: 30}, "3+4=7", 2),
    ({3: 30, 4: 70}, "4+3=7", 3),
    # biopsy: the highest remaining grade is secondary however small it is
    ({3: 90, 4: 9, 5: 1}, "3+5=8", 4),
    ({4: 60, 3: 39, 5: 1}, "4+5=9", 5),
    ({5: 2, 3: 1}, "5+3=8", 4),
    ({4: 50, 3: 50}, "4+3=7", 3),  # a tie: the higher grade is primary
    ({4: 5}, "4+4=8", 4),
])
def test_biopsy_rule_by_hand(extents, label, group):
    g = grade_slide(extents)
    assert (g.label, g.grade_group) == (label, group)


def test_prostatectomy_rule_and_noise_guard():
    assert grade_slide({3: 90, 4: 9, 5: 1}, rule="prostatectomy").label == "3+4=7"
    assert grade_slide({3: 90, 4: 9, 5: 1}, min_extent=2).label == "3+4=7"
    assert grade_slide({3: 1}, min_extent=2).label == "benign"
    g = grade_slide({3: 3, 4: 1}).to_dict()
    assert g["extents"] == {"3": 3.0, "4": 1.0, "5": 0.0} and g["score"] == 7 and g["label"] == "3+4=7"
    with pytest.raises(ConfigError, match="rule"):
        grade_slide({3: 1}, rule="tma")
    with pytest.raises(ConfigError, match="expected 3, 4 or 5"):
        grade_group(2, 3)
