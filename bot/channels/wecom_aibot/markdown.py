"""The bot's plain texts as the markdown the smart robot sends (its replies and pushes have no plain-text kind).

A resident's "3号楼*2" or a help line starting with "#助手" must arrive as typed, not as emphasis or a heading, so
the characters markdown reads are escaped with a backslash (CommonMark), and each line break is a hard break
(two spaces before it) so the lines of a ticket notice stay lines. A member is @-mentioned with `<@userid>`,
WeCom's markdown mention (the same as its group robots'), written after the escaping so it stays a mention.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.messages import Mention

_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def escape(text: str) -> str:
    return _SPECIAL.sub(r"\\\1", text).replace("\r\n", "\n").replace("\n", "  \n")


def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def compose(text: str, mentions: Sequence[Mention] = (), *, mention_bytes: int) -> str:
    """The markdown of `text` after the mentions that fit in `mention_bytes` (the rest are left out, and the
    message still goes: a lost @ is better than a lost answer)."""
    prefix = ""
    for person in mentions:
        candidate = f"{prefix}{mention(person.id)} "
        if len(candidate.encode()) <= mention_bytes:
            prefix = candidate
    return prefix + escape(text)
