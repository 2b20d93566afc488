"""Whether an addressed message only greets, thanks, says goodbye, asks who the bot is or acknowledges — and nothing else.

The self-introduction and the other one-line replies are for exactly those messages. A closed-set intent model puts
short real requests (a bus route, a smell, 门口停车) on chitchat, and a gate score says how grid-like words are, not
whether they ask for anything: both let a resident's short request get a friendly word instead of a person. So the
decision is made on the words themselves: a message whose every word is one of a few social forms
(actions/data/social_forms.yml: 你好, 谢谢, 在吗, 好的, 你是谁 …, with filler such as 啊/呀/啦) is social; a message
with any word of its own is something to place. The same reading tells a bare complaint about an answer (没用,
答非所问 你说的不对) from a question that merely opens with one.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Literal

import yaml

FORMS_FILE = Path(__file__).parent / "data" / "social_forms.yml"

Kind = Literal["unhelpful", "identity", "greeting", "thanks", "farewell", "acknowledgement"]
# A message mixing kinds is of the first here: 好的 没用 complains, 你好 你是谁 asks who.
PRECEDENCE: tuple[Kind, ...] = ("unhelpful", "identity", "greeting", "thanks", "farewell", "acknowledgement")
# Everything but letters, digits and CJK characters is punctuation, emoji or space: it says nothing here.
_NOT_WORD = re.compile(r"[^0-9a-z\u4e00-\u9fff]+")


@cache
def _forms() -> dict[str, str | None]:
    """Each form → its kind (None: filler, which frames a form without a kind of its own)."""
    data = yaml.safe_load(FORMS_FILE.read_text(encoding="utf-8"))
    forms: dict[str, str | None] = {}
    for kind, words in data.items():
        for word in words:
            forms.setdefault(str(word).lower(), None if kind == "filler" else kind)
    return forms


def bare_kind(text: str) -> Kind | None:
    """The kind of a message made only of social forms and filler, or None when it has words of its own.

    Every way of reading the message as a run of forms is considered (谢谢你们 is 谢谢 你 …, not 谢 …); a message
    that no such reading covers has something to say."""
    plain = _NOT_WORD.sub("", text.lower())
    forms = _forms()
    longest = max(map(len, forms))
    # kinds[i]: the kinds met on some reading of plain[:i] as forms (None: no reading reaches i)
    kinds: list[frozenset[str] | None] = [frozenset()] + [None] * len(plain)
    for end in range(1, len(plain) + 1):
        for start in range(max(0, end - longest), end):
            before = kinds[start]
            if before is None or plain[start:end] not in forms:
                continue
            kind = forms[plain[start:end]]
            reached = before | ({kind} if kind else set())
            kinds[end] = reached if kinds[end] is None else kinds[end] | reached
    found = kinds[len(plain)]
    if found is None:
        return None
    return next((kind for kind in PRECEDENCE if kind in found), "acknowledgement")


def is_social(text: str) -> bool:
    """Only a greeting, thanks, farewell, 你是谁 or an acknowledgement: the one-line reply fits."""
    kind = bare_kind(text)
    return kind is not None and kind != "unhelpful"
