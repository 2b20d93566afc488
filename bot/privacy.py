"""Residents' phone and room numbers masked before text reaches a group; secrets and phones redacted for logs.

A neighbourhood group has hundreds of members, and what the bot posts there (a ticket confirmation that
echoes the location, a worker's 办结 result quoted back) is seen by all of them and kept in their phones.
The ticket itself keeps the full details for the grid worker; the group only needs to see that the bot
understood. So text going into a group passes through `mask_for_group`, and log lines through
`redact_for_log` (installed by `bot.logging_setup`).

Rules (matching is done on a copy where full-width digits, letters and signs are folded to ASCII, so
１３８… is found too; the original characters outside a masked span are kept as written):

Mobiles (always masked, in groups and in logs): 11 digits 1[3-9]x…, optionally grouped 3-4-4 by spaces or
dashes (138 1234 5678, 138-1234-5678) and optionally prefixed by +86 / 0086 / 86. They become the first
three and last four digits around four stars: 138****5678 (a prefix stays as typed: +86 138****5678).
A mobile is only one when it stands alone: a digit or ASCII letter right before it, or a digit right
after it, means it is part of a longer number (ticket GD20261125-0001, an 18-digit ID, an order number)
and nothing in that run is touched.

Landlines: an area code (010, 02x, or 0 + three digits such as 0571), optionally in brackets, then a
7–8 digit local number (not starting 0), separated by a dash, a space or nothing (010-12345678,
(0571)8888888, 0571 88886666). Also a bare 7–8 digit local number right after 电话 / 座机 / 固话 / tel.
The local number keeps its last four digits: 010-****5678, 0571-***8888. In groups, a landline labelled
as a public contact right before it (咨询电话：, 服务热线, 24小时抢修电话, 物业电话, 请拨打 …) is kept:
knowledge answers and notices quote office numbers residents are meant to call. Mobiles get no such
exception (the issue's promise is "138****1234", and an office that publishes a mobile is the rare case).
Hotlines such as 12345, 110, 95598 and 400-/800- numbers are never masked.

Rooms (groups only): the building and unit stay (the worker's stairwell light is in 3号楼2单元, and other
residents may well recognise it), the room digits become one star each:
  3号楼2单元301室 → 3号楼2单元***室; 三号楼二单元1202 → 三号楼二单元****; 5栋1202 → 5栋****;
  B座1501 → B座****; 3栋2-301 → 3栋2-***; 2单元301 → 2单元***; 2-3-301 → 2-3-***;
  a bare 301室 / 1202房 → ***室 / ****房, unless a public place names it (居委会301室, 服务中心102室).
A room is 3–4 digits not followed by another digit or by a unit of measure (3号楼1000元 is money, not a room).
Floors (3楼, 12层) and street numbers (幸福路88号) are not rooms.

Masking is idempotent (masked text has no digits left where a number was) and never touches text that is
not a phone or room number; both are checked by property tests in tests/test_properties.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Full-width ASCII (！…～, including digits and letters) and the ideographic space fold 1:1 to ASCII, so
# positions in the folded copy are positions in the original.
_FOLD = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FOLD[0x3000] = 0x20


def _fold(text: str) -> str:
    return text.translate(_FOLD)


# -- phones ----------------------------------------------------------------------------------------------

_SEP = r"[ \-\u2005\u00a0]?"
MOBILE = re.compile(
    rf"(?<![0-9A-Za-z])(?P<prefix>(?:\+|00)?86[ \-]?)?(?P<head>1[3-9]\d){_SEP}(?P<mid>\d{{4}}){_SEP}(?P<tail>\d{{4}})(?!\d)",
    re.ASCII,
)
LANDLINE = re.compile(
    r"(?<![0-9A-Za-z+\-*])(?P<area>[(]?0(?:10|2\d|[3-9]\d\d)[)]?)(?P<sep>[ \-]?)(?P<local>[1-9]\d{6,7})(?!\d)", re.ASCII
)
LABELLED_LOCAL = re.compile(
    r"(?:电话|座机|固话|tel|TEL|Tel)(?:号码)?(?:是|为)?[:\s]*(?P<local>(?<![0-9*])[1-9]\d{6,7})(?!\d)", re.ASCII
)
# A contact the text itself presents as public, right before the number (same clause).
_PUBLIC_PHONE_LABEL = re.compile(
    r"(?:(?:咨询|服务|客服|热线|抢修|报修|维修|值班|办公|订餐|预约|物业|投诉|举报|办事|监督|救助|求助|平安办|居委会"
    r"|社区|街道|中心|窗口|公司|门诊|医院|派出所|环卫)(?:电话|热线|专线)|热线|专线|总机|请?拨打)(?:号码)?(?:是|为)?[:\s]*$"
)
_LABEL_WINDOW = 16


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    replacement: str


def _stars_but_last4(digits: str) -> str:
    return "*" * (len(digits) - 4) + digits[-4:]


def _is_public(folded: str, start: int, pattern: re.Pattern[str], window: int) -> bool:
    before = re.split(r"[，。；！？,.;!?\n]", folded[max(0, start - window) : start])[-1]
    return pattern.search(before) is not None


def _phone_edits(folded: str, *, keep_public: bool) -> list[_Edit]:
    # Only the number's own digits are replaced: a prefix, brackets and separators before it stay as typed.
    edits = [_Edit(m.start("head"), m.end(), f"{m['head']}****{m['tail']}") for m in MOBILE.finditer(folded)]
    for m in LANDLINE.finditer(folded):
        if not (keep_public and _is_public(folded, m.start(), _PUBLIC_PHONE_LABEL, _LABEL_WINDOW)):
            edits.append(_Edit(m.start("local"), m.end("local"), _stars_but_last4(m["local"])))
    for m in LABELLED_LOCAL.finditer(folded):
        if not (keep_public and _is_public(folded, m.start(), _PUBLIC_PHONE_LABEL, _LABEL_WINDOW)):
            edits.append(_Edit(m.start("local"), m.end("local"), _stars_but_last4(m["local"])))
    return edits


# -- rooms -----------------------------------------------------------------------------------------------

_CN_NUM = "[零〇一二两三四五六七八九十百]"
_BUILDING = rf"(?:(?<![0-9A-Za-z])(?:\d{{1,4}}|[A-Za-z]{{1,2}}\d{{0,2}})|{_CN_NUM}{{1,4}})\s*(?:号楼|号院|号|栋|幢|座|楼|#)"
_UNIT = rf"(?:\d{{1,2}}|{_CN_NUM}{{1,3}})\s*单元"
# What may not follow a room's digits: more digits, a decimal or time separator, or a unit of measure.
_ROOM_END = r"(?![\d.:]|\s*(?:元|块|万|千|年|月|日|天|个|人|次|平|米|分|秒|岁|斤|%|度|期|路|公里|kg|cm|mm|G|M|K))"
_ROOM_PATTERNS = (
    # 3号楼2单元301室, 5栋1202, B座1501, 3栋2-301, 三号楼二单元1202
    re.compile(rf"{_BUILDING}\s*-?\s*(?:{_UNIT}\s*-?\s*|\d{{1,2}}\s*-\s*)?(?P<room>\d{{3,4}}){_ROOM_END}", re.ASCII),
    # 2单元301
    re.compile(rf"{_UNIT}\s*-?\s*(?P<room>\d{{3,4}}){_ROOM_END}", re.ASCII),
    # 2-3-301
    re.compile(r"(?<![0-9A-Za-z\-*])\d{1,3}-\d{1,2}-(?P<room>\d{3,4})(?![\d\-])", re.ASCII),
)
# A bare 301室 / 1202房 (not 1200房租): a room, unless a public place names it just before.
_BARE_ROOM = re.compile(r"(?<![\d*])(?<!\d{4}-)(?P<room>\d{3,4})\s*(?:室|房间|房(?![租费款价产屋贷源子东]))", re.ASCII)
_PUBLIC_PLACE = re.compile(
    r"(?:居委会|服务中心|服务站|党群|大厅|政务|街道办|派出所|医院|门诊|卫生院|办公楼|大楼|大厦|中心|政府|法院|银行|学校|办公室|物业)"
)
_PLACE_WINDOW = 12


def _room_edits(folded: str) -> list[_Edit]:
    edits = [
        _Edit(m.start("room"), m.end("room"), "*" * len(m["room"]))
        for pattern in _ROOM_PATTERNS
        for m in pattern.finditer(folded)
    ]
    for m in _BARE_ROOM.finditer(folded):
        if not _is_public(folded, m.start(), _PUBLIC_PLACE, _PLACE_WINDOW):
            edits.append(_Edit(m.start("room"), m.end("room"), "*" * len(m["room"])))
    return edits


# -- applying --------------------------------------------------------------------------------------------


def _apply(text: str, edits: Iterable[_Edit]) -> str:
    """Replace the spans in the original text; of overlapping spans the earliest (then longest) wins."""
    parts: list[str] = []
    position = 0
    for edit in sorted(edits, key=lambda e: (e.start, -e.end)):
        if edit.start < position:
            continue
        parts.append(text[position : edit.start])
        parts.append(edit.replacement)
        position = edit.end
    parts.append(text[position:])
    return "".join(parts)


def _masked(text: str, find: Callable[[str], list[_Edit]]) -> str:
    return _apply(text, find(_fold(text)))


def mask_phones(text: str, *, keep_public: bool = True) -> str:
    """Mobiles always, landlines unless `keep_public` and the text labels them a public contact."""
    return _masked(text, lambda folded: _phone_edits(folded, keep_public=keep_public))


def mask_rooms(text: str) -> str:
    """Room digits after a building/unit, in 2-3-301 form, or before 室/房 (not at a public place)."""
    return _masked(text, _room_edits)


def mask_for_group(text: str) -> str:
    """What a group may see of a text: phones and room numbers masked, everything else as written."""
    return mask_rooms(mask_phones(text))


# -- secrets (logs) --------------------------------------------------------------------------------------

_SECRET_NAME = (
    r"[A-Za-z0-9_.\-]*?(?:token|secret|password|passwd|pwd|api[_\-]?keys?|apikey|access[_\-]?key|private[_\-]?key"
    r"|aes[_\-]?key|signature|credentials?)"
)
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer abc / "authorization": "Basic …" (the whole value, up to the line's or quote's end)
    (
        re.compile(r"(?i)(?P<keep>(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?P<value>[^'\"\r\n,}]+)"),
        r"\g<keep>***",
    ),
    # a credential without its header name: "Bearer eyJ…", "Basic dXNlcjpwYXNz" (base64 with a digit or padding)
    (re.compile(r"(?i)(?P<keep>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=\-]{8,})"), r"\g<keep>***"),
    (re.compile(r"(?P<keep>\bBasic\s+)(?P<value>(?=[A-Za-z0-9+/]*[0-9=])[A-Za-z0-9+/]{8,}=*)"), r"\g<keep>***"),
    # token=…, secret: …, "password": "…", WECHATY_PUPPET_SERVICE_TOKEN=…, ?access_token=…&
    (
        re.compile(rf"(?i)(?P<keep>{_SECRET_NAME}['\"]?\s*[=:]\s*['\"]?)(?P<value>(?!\*\*\*)[^\s'\"&;}})\]]+)"),
        r"\g<keep>***",
    ),
    # scheme://user:password@host (database, Redis and AMQP URLs)
    (re.compile(r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<value>[^@/\s]+)(?=@)"), r"\g<keep>***"),
)


def redact_secrets(text: str) -> str:
    """Secret values (tokens, passwords, keys, Authorization, URL passwords) replaced by ***, names kept."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_for_log(text: str) -> str:
    """A log line: secrets redacted and every phone masked (public or not: logs have no audience to call it)."""
    return mask_phones(redact_secrets(text), keep_public=False)
