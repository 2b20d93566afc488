"""The one masking policy: residents' phone, ID card and room numbers, names and ids, as each reader may see them.

A neighbourhood group has hundreds of members, and what the bot posts there (a ticket confirmation that
echoes the location, a worker's 办结 result quoted back) is seen by all of them and kept in their phones.
The ticket itself keeps the full details for the grid worker; the group only needs to see that the bot
understood. So text going into a group passes through `mask_for_group`, and log lines through
`redact_for_log` (installed by `bot.logging_setup`).

Residents' text read anywhere else by someone who does not handle the ticket (Open311 reads, which the
internet can fetch; the weekly report and the statistics, which get forwarded and printed; the console of a
read-only viewer) goes through `mask_personal`, and the reporter's name and id through `reporter_as_seen`.
Who sees what unmasked is decided in one place, `sees_personal_data`: admins everywhere but the public
surface; grid workers and leads on the console, where they act on their own grids' tickets and need the door
and the phone; nobody on the public surface. The API modules ask it instead of deciding for themselves.

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

ID card numbers (居民身份证, everywhere: groups, logs, public surfaces): 18 digits (the last may be X) made of a
region code, a birth date 18xx–20xx with a real month and day, and three more digits; or the old 15-digit form
with a two-digit year. Groups of 6-8-4 (or 6-6-3) separated by a space or a dash are found too. The first three
and the last four characters stay, every digit between becomes a star: 110***********1234. As for mobiles, a
digit or ASCII letter right before or after means a longer number (an order number, a bank card), left alone.
The check digit is not verified: a mistyped ID is as personal as a correct one.

Masking is idempotent (masked text has no digits left where a number was) and never touches text that is
not a phone, ID card or room number; both are checked by property tests in tests/test_properties.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

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


# -- ID card numbers -------------------------------------------------------------------------------------

_ID_DAY = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
ID_CARD = re.compile(
    rf"(?<![0-9A-Za-z])(?:[1-9]\d{{5}}(?P<sep>[ \-]?)(?:18|19|20)\d\d{_ID_DAY}(?P=sep)\d{{3}}[0-9Xx]"
    rf"|[1-9]\d{{5}}(?P<old_sep>[ \-]?)\d\d{_ID_DAY}(?P=old_sep)\d{{3}})(?![0-9A-Za-z])",
    re.ASCII,
)


def _id_edits(folded: str) -> list[_Edit]:
    """Every character of the number but its first three and last four becomes a star; separators stay."""
    edits = []
    for m in ID_CARD.finditer(folded):
        number = m.group()
        positions = [i for i, c in enumerate(number) if c.isalnum()]
        hidden = set(positions[3:-4])
        edits.append(_Edit(m.start(), m.end(), "".join("*" if i in hidden else c for i, c in enumerate(number))))
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


def mask_id_numbers(text: str) -> str:
    """ID card numbers (18 digits or the old 15) down to their first three and last four characters."""
    return _masked(text, _id_edits)


def mask_for_group(text: str) -> str:
    """What a group may see of a text: phones (but offices' public numbers), ID and room numbers masked."""
    return mask_rooms(mask_phones(mask_id_numbers(text)))


def mask_personal(text: str) -> str:
    """Residents' text for a reader who does not handle the ticket: every phone, ID and room number masked.

    Unlike a group, where the bot quotes offices' numbers residents are meant to call, a ticket's text is what a
    resident or a worker wrote about one household, so a landline labelled 物业电话 is masked here too.
    """
    return mask_rooms(mask_phones(mask_id_numbers(text), keep_public=False))


# -- who sees what ---------------------------------------------------------------------------------------


class Surface(StrEnum):
    """Where a ticket's personal data would be read, which decides together with the role what is masked."""

    CONSOLE = "console"  # a ticket on screen (the console, the tickets API): read to act on it
    REPORT = "report"  # figures and downloads (statistics, the weekly XLSX): forwarded, printed and kept
    PUBLIC = "public"  # Open311 reads and anything else the internet can fetch


def sees_personal_data(role: str | None, surface: Surface) -> bool:
    """Whether an account of `role` (AccountRole's value: admin, worker, viewer; None: nobody logged in) reads
    residents' personal data unmasked on `surface`.

    Admins answer for the data and see it wherever they are logged in. Workers (leads too) see it where they act
    on their own grids' tickets, not in a report that leaves the console as a file. Viewers (leaders reading
    figures) never need a door or a phone number.
    """
    if surface is Surface.PUBLIC or role is None:
        return False
    if role == "admin":
        return True
    return surface is Surface.CONSOLE and role == "worker"


def text_as_seen(text: str, role: str | None, surface: Surface) -> str:
    """Residents' or workers' free text (description, location, result, notes) as this reader may see it."""
    return text if sees_personal_data(role, surface) else mask_personal(text)


def mask_name(name: str) -> str:
    """A person's name down to its first character: 张三 → 张*, 居民小王 → 居***. Idempotent."""
    return name[:1] + "*" * (len(name) - 1)


def mask_person_id(person_id: str) -> str:
    """A resident's id (a chat account, "open311:<phone or account>") down to its source and four characters.

    The source before the first colon stays (open311:…), then the first two and last two characters, so a reader
    can still tell two residents apart without being able to contact either: open311:13*******78.
    """
    source, colon, rest = person_id.partition(":")
    if not colon or not source.isascii() or not source.isalnum():
        source, colon, rest = "", "", person_id
    shown = "*" * len(rest) if len(rest) <= 6 else rest[:2] + "*" * (len(rest) - 4) + rest[-2:]
    return f"{source}{colon}{shown}"


def reporter_as_seen(reporter_id: str, reporter_name: str, role: str | None, surface: Surface) -> tuple[str, str]:
    """A ticket's reporter (id, name) as this reader may see them: as stored, or masked by the same rule as text."""
    if sees_personal_data(role, surface):
        return reporter_id, reporter_name
    return mask_person_id(reporter_id), mask_name(reporter_name)


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
    """A log line: secrets redacted, every phone (public or not: logs have no audience to call it) and ID number masked."""
    return mask_phones(mask_id_numbers(redact_secrets(text)), keep_public=False)
