"""Issue categories from `data/categories.yml`: the table that gives a report its category, deadline and colour."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

CATEGORIES_FILE = Path(__file__).parent / "data" / "categories.yml"
FALLBACK_CATEGORY = "其他"


@dataclass(frozen=True)
class Category:
    name: str
    colour: str
    deadline_hours: int
    keywords: tuple[str, ...]


@cache
def load_categories(path: Path = CATEGORIES_FILE) -> tuple[Category, ...]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))["categories"]
    return tuple(Category(c["name"], c["colour"], int(c["deadline_hours"]), tuple(c.get("keywords") or ())) for c in raw)


def category_named(name: str) -> Category | None:
    return next((c for c in load_categories() if c.name == name), None)


def classify(text: str, hint: str | None = None) -> Category:
    """Pick the category: safety words first, then an NLU hint naming a known category, else the longest keyword.

    A report that says 危险 or 燃气味 is red (立行立改) whatever object it names, so red categories are
    matched before the hint (井盖丢了 很危险 is a safety hazard, not only a municipal repair). Otherwise the
    longest keyword wins, so 楼道灯 (物业管理) beats shorter keywords, and table order breaks ties.
    """
    urgent = _longest_match(text, [c for c in load_categories() if c.colour == "red"])
    if urgent is not None:
        return urgent
    if hint and (hinted := category_named(hint)):
        return hinted
    found = _longest_match(text, list(load_categories()))
    if found is not None:
        return found
    fallback = category_named(FALLBACK_CATEGORY)
    assert fallback is not None, "categories.yml must define 其他"
    return fallback


def _longest_match(text: str, categories: list[Category]) -> Category | None:
    best: tuple[int, Category] | None = None
    for category in categories:
        for keyword in category.keywords:
            if keyword in text and (best is None or len(keyword) > best[0]):
                best = (len(keyword), category)
    return best[1] if best else None
