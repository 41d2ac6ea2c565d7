"""Slide-level Gleason grading from the extent of each pattern: primary and secondary pattern, Gleason
score and ISUP grade group.

The rule for needle biopsies (SICAPv2's patches and the synthetic slides are biopsies), from the 2014
ISUP consensus (Epstein et al., Am J Surg Pathol 2016;40:244-252) kept by the 2019 one (van Leenders et
al., Am J Surg Pathol 2020;44:e87-e99):

- the **primary** pattern is the most extensive one;
- the **secondary** pattern is the **highest remaining grade, whatever its extent**; with one pattern
  only, the secondary is the primary (3+3, 4+4, 5+5);
- grade groups (Epstein et al., Eur Urol 2016;69:428-435): score <= 6 -> 1; 3+4 -> 2; 4+3 -> 3;
  8 (4+4, 3+5, 5+3) -> 4; 9-10 -> 5.

(In radical prostatectomies the secondary is the second most extensive pattern and a higher tertiary is
reported apart: :func:`grade_slide` with ``rule="prostatectomy"``.) Two patterns of equal extent: the
higher grade is primary. ``min_extent`` ignores patterns below that extent (e.g. one or two tiles a
classifier called G5 by mistake); it is a guard against classifier noise, not part of the rule, and 0
applies the rule as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ird_tf.errors import ConfigError

PATTERNS = (3, 4, 5)
RULES = ("biopsy", "prostatectomy")


@dataclass(frozen=True)
class Grading:
    """None everywhere for a slide with no cancer."""

    primary: int | None
    secondary: int | None
    score: int | None
    grade_group: int | None
    extents: dict[int, float]
    rule: str

    @property
    def label(self) -> str:
        return "benign" if self.primary is None else f"{self.primary}+{self.secondary}={self.score}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["extents"] = {str(k): v for k, v in self.extents.items()}
        d["label"] = self.label
        return d


def grade_group(primary: int, secondary: int) -> int:
    """ISUP grade group of a Gleason score ``primary + secondary``."""
    if primary not in PATTERNS or secondary not in PATTERNS:
        raise ConfigError(f"Gleason patterns ({primary}, {secondary}): expected 3, 4 or 5 each")
    score = primary + secondary
    if score <= 6:
        return 1
    if score == 7:
        return 2 if primary == 3 else 3
    return 4 if score == 8 else 5


def grade_slide(extents: Mapping[int, float], *, rule: str = "biopsy", min_extent: float = 0.0) -> Grading:
    """Grading of a slide whose patterns 3/4/5 cover ``extents`` (any unit of area: tiles, mm², ...)."""
    if rule not in RULES:
        raise ConfigError(f"rule={rule!r}: expected one of {list(RULES)}")
    ext = {int(p): float(extents.get(p, 0.0)) for p in PATTERNS}
    if any(v < 0 for v in ext.values()):
        raise ConfigError(f"pattern extents {ext}: expected areas >= 0")
    present = [p for p in PATTERNS if ext[p] > 0 and ext[p] >= min_extent]
    if not present:
        return Grading(None, None, None, None, ext, rule)
    primary = max(present, key=lambda p: (ext[p], p))
    rest = [p for p in present if p != primary]
    if not rest:
        secondary = primary
    elif rule == "biopsy":
        secondary = max(rest)
    else:
        secondary = max(rest, key=lambda p: (ext[p], p))
    return Grading(primary, secondary, primary + secondary, grade_group(primary, secondary), ext, rule)


__all__ = ["PATTERNS", "RULES", "Grading", "grade_group", "grade_slide"]
