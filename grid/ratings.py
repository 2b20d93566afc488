"""Return-visit ratings (回访评价): the three answers the resident may give, from words or digits."""

from __future__ import annotations

import re
from enum import StrEnum


class Rating(StrEnum):
    SATISFIED = "满意"
    MOSTLY_SATISFIED = "基本满意"
    UNSATISFIED = "不满意"


# Checked in order: "不满意" contains "满意", so the negative and the qualified forms come first.
_PATTERNS: tuple[tuple[re.Pattern[str], Rating], ...] = (
    (re.compile(r"不满意|不太满意|差评|没修好|没解决|还是不行|还没好"), Rating.UNSATISFIED),
    (re.compile(r"基本满意|还行|一般|凑合|还可以"), Rating.MOSTLY_SATISFIED),
    (re.compile(r"满意|好评|很好|非常好"), Rating.SATISFIED),
    (re.compile(r"^\D*3\s*(分|星)?\D*$"), Rating.UNSATISFIED),
    (re.compile(r"^\D*2\s*(分|星)?\D*$"), Rating.MOSTLY_SATISFIED),
    (re.compile(r"^\D*1\s*(分|星)?\D*$"), Rating.SATISFIED),
)


def parse_rating(text: str, hint: str | None = None) -> Rating | None:
    """The rating a message gives, or None; `hint` is an NLU entity value already normalised to a Rating."""
    if hint:
        try:
            return Rating(hint)
        except ValueError:
            pass
    compact = text.strip()
    for pattern, rating in _PATTERNS:
        if pattern.search(compact):
            return rating
    return None
