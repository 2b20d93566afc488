"""A resident's pick among the entries "您想问的是…" offered: `2`, `2.`, `第二个`, `选1`, `二` → 2; `都不是` → 0.

Parsed exactly, like worker commands (bot/commands.py), and only while the router awaits a choice from this
person: NLU was never trained on a bare "2", and guessing would answer from an entry nobody picked. Anything that
is not plainly a pick is None, so a resident who asks something else instead is routed like any message.
"""

from __future__ import annotations

import re
import unicodedata

NONE_OF_THEM = 0
_NUMERALS = {"零": 0, "〇": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
# Punctuation and particles around a pick ("2。", "第二个吧", "选1哈") that do not change it.
_TRIM = " \t\r\n。.，,、！!~～…?？"
_PICK = re.compile(
    r"^(?:我|就)?(?:选|要|是)?(?:第)?(?P<n>\d{1,2}|[零〇一二三四五六七八九十])(?:个|条|项|种)?(?:吧|啊|呀|哦|哈|的)?$"
)
# "None of them": the question goes to a person. `没有` and a bare `不是` count too: they answer "您想问的是…".
_NONE = re.compile(r"^(?:以上|好像|感觉)?(?:都|全都|全)?(?:不是|不对|没有|没|不要|不用)(?:的|啊|呀|哦|哈|吧|了)?$")


def parse_choice(text: str) -> int | None:
    """The picked number (1-based, as shown), 0 for none of them, None when the text is not a pick."""
    cleaned = unicodedata.normalize("NFKC", text).strip(_TRIM).replace(" ", "")
    if not cleaned:
        return None
    if _NONE.match(cleaned):
        return NONE_OF_THEM
    found = _PICK.match(cleaned)
    if found is None:
        return None
    number = found.group("n")
    return int(number) if number.isdigit() else _NUMERALS[number]
