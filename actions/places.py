"""The place a report names, whole: "在3号楼和4号楼中间那条路上" is one spot, not "4号楼".

NLU tags places piece by piece (3号楼, 4号楼), and a text slot filled from entities keeps one of them, so the
worker went to the wrong building. The place residents mean runs from the first tagged piece to the last when
only a joining word lies between them (和, 与, 到, 的…), and on over the words that say where at that spot
(中间那条路上, 门口, 楼下, 东侧…). The pieces stay as NLU found them; only the words around them are added.
"""

from __future__ import annotations

import re
from typing import Any

# Between two tagged pieces of one place: a conjunction, "的", a direction word, or a short unit like 2单元.
_JOIN = re.compile(r"^(?:\s|和|与|跟|及|到|至|、|的|之间|中间|东|西|南|北|[0-9一二三四五六七八九十]+(?:单元|层|楼|室|号))*$")
# After the last piece: where at that spot. A spot word is required (else "3号楼路灯坏了" would give "3号楼路"), and
# it stays short so the clause that follows ("门口堆满了垃圾") keeps its noun.
_SPOT = (
    r"(?:中间|之间|东侧|西侧|南侧|北侧|东边|西边|南边|北边|门口|楼下|楼顶|楼道|后面|前面|对面|旁边|附近|拐角|路口|边上"
    r"|里面|侧面|背后)"
)
_ROAD = r"(?:那条|这条)?(?:路|小路|过道|通道|马路|巷子)(?:上|边|口|里)?"
_UNIT = r"(?:[0-9一二三四五六七八九十]+(?:单元|层|楼|室))*"
_AFTER = re.compile(rf"^{_UNIT}(?:的?(?:{_SPOT}(?:的?{_ROAD})?|(?:那条|这条){_ROAD}))?")
MAX_JOIN_CHARS = 8


def whole_place(text: str, entities: list[dict[str, Any]]) -> str | None:
    """The place from the first location piece to the last (when they belong together) and what says where at it,
    or None when NLU tagged no location with offsets in `text`."""
    pieces = sorted(
        (e for e in entities if e.get("entity") == "location" and _has_span(e, text)), key=lambda e: int(e["start"])
    )
    if not pieces:
        return None
    start, end = int(pieces[0]["start"]), int(pieces[0]["end"])
    for piece in pieces[1:]:
        gap = text[end : int(piece["start"])]
        if int(piece["start"]) < end:
            end = max(end, int(piece["end"]))  # overlapping tags (regex and DIET on the same words)
        elif len(gap) <= MAX_JOIN_CHARS and _JOIN.match(gap):
            end = int(piece["end"])
        else:
            break  # a second, separate place: the first one named is the report's
    after = _AFTER.match(text[end:])
    if after:
        end += after.end()
    return text[start:end].strip() or None


def _has_span(entity: dict[str, Any], text: str) -> bool:
    start, end = entity.get("start"), entity.get("end")
    return isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(text)
