"""Text clean-up before NLU, so Rasa sees one form of what residents type in many.

WeChat group text arrives with quoted messages, @mentions of people, emoji and WeChat's bracketed
emoticons ([强]), traditional characters (樓道燈壞了), full-width digits (３号楼) and forwarded walls of
text. None of that helps intent or entity detection; all of it varies. The original text is kept by the
channel; only Rasa gets the normalised one.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import opencc

NLU_MAX_CHARS = 300

# Full-width letters and digits (３号楼, ＡＢＣ) fold to ASCII; Chinese punctuation (，。！？) stays as residents write it.
_WIDTH_FOLD = {code: code - 0xFEE0 for code in (*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B))}
_WIDTH_FOLD[0x3000] = 0x20

# A quoted message: 「张三：原文」 or "张三：原文" followed by WeChat's dashed separator line, then the reply.
_QUOTE_BLOCK = re.compile(r"^\s*[「\"“](?P<quoted>.*?)[」\"”]\s*\n\s*(?:-\s*){5,}\s*\n?", re.DOTALL)
_SEPARATOR = re.compile(r"^\s*(?:-\s*){5,}\s*$", re.MULTILINE)
# An @mention runs to WeChat's U+2005 (or a plain space) after the name.
_MENTION = re.compile(r"@[^\s\u2005@]{1,20}[\u2005 ]?")
# WeChat's text emoticons: [强] [玫瑰] [捂脸] [Smile]; also placeholders such as [图片].
_EMOTICON = re.compile(r"\[[\u4e00-\u9fffA-Za-z]{1,6}\]")
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\U0001f3fb-\U0001f3ff\u200d\ufe0f\u20e3]+")
_SPACES = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W_]+")


@cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def normalise(text: str, bot_name: str) -> str:
    """The text Rasa sees: simplified, width-folded, without quotes, mentions, emoji and emoticons, capped.

    Empty when no words are left (only emoji, emoticons or punctuation: [强][强], ？？？): that is ordinary chat,
    and the router says nothing to an empty text, addressed or not, on every channel, without asking Rasa.
    """
    cleaned = unicodedata.normalize("NFC", text).translate(_WIDTH_FOLD)
    cleaned = _QUOTE_BLOCK.sub("", cleaned)
    cleaned = _SEPARATOR.sub(" ", cleaned)
    cleaned = re.sub(rf"@{re.escape(bot_name)}[\u2005 ]?", " ", cleaned)
    cleaned = _MENTION.sub(" ", cleaned)
    cleaned = _EMOTICON.sub(" ", cleaned)
    cleaned = _EMOJI.sub(" ", cleaned)
    cleaned = _t2s().convert(cleaned)
    cleaned = _SPACES.sub(" ", cleaned).strip()[:NLU_MAX_CHARS].rstrip()  # the cap may cut right after a space
    return cleaned if has_words(cleaned) else ""


def quoted_text(text: str, bot_name: str) -> str:
    """The message a reply quotes, normalised like any text (its author's "张三：" kept), or "" when none.

    `normalise` drops the quote so NLU reads the reply's own words; what the reply is about (a notice, a
    neighbour's report, the bot's own answer or ticket notice) is often only in the quote.
    """
    found = _QUOTE_BLOCK.match(unicodedata.normalize("NFC", text).translate(_WIDTH_FOLD))
    return normalise(found.group("quoted"), bot_name) if found else ""


def has_words(text: str) -> bool:
    """True when something other than emoji, emoticons, punctuation and spaces is left to understand."""
    stripped = _EMOJI.sub("", _EMOTICON.sub("", text))
    return bool(_NON_WORD.sub("", stripped))
