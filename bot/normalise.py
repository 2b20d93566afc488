"""Text clean-up before NLU: width folding, whitespace, and removing the @mention of the bot itself.

Issue #3 extends this (OpenCC traditional→simplified, quotes, emoji handling); keep it one small module.
"""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")
# Emoji, pictographs, dingbats, variation selectors, joiners and skin tones: "no words" if nothing else is left.
_NON_WORD = re.compile(
    r"[\s\u200d\ufe0f\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\U0001f3fb-\U0001f3ff"
    r"\u3000-\u303f\uff00-\uff0f\uff1a-\uff20\u0021-\u002f\u003a-\u0040\u005b-\u0060\u007b-\u007e]+"
)


# Full-width letters and digits (３号楼, ＡＢＣ) fold to ASCII; Chinese punctuation (，。！？) stays as residents write it.
_WIDTH_FOLD = {code: code - 0xFEE0 for code in (*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B))}
_WIDTH_FOLD[0x3000] = 0x20


def normalise(text: str, bot_name: str) -> str:
    """Fold full-width letters and digits, drop '@<bot name>' wherever it stands, collapse whitespace."""
    folded = unicodedata.normalize("NFC", text).translate(_WIDTH_FOLD)
    folded = re.sub(rf"@{re.escape(bot_name)}[\s\u2005]*", " ", folded)
    return _SPACES.sub(" ", folded).strip()


def has_words(text: str) -> bool:
    """True when something other than emoji, punctuation and spaces is left to understand."""
    return bool(_NON_WORD.sub("", text))
