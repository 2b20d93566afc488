"""Where a report says the problem is, in one comparable form: `3号楼门口`, `三号楼前面` and `3栋楼下` are one spot.

Residents name one place in many ways (Chinese or Arabic numerals; 号楼, 栋, 幢, 座; 门口, 楼下, 前面, 旁边), and the
old rule ("one text inside the other") both missed those and matched junk: a ticket whose extracted location was
the single character `号` was found inside `2号楼` and swallowed a real leak report (duplicates, docs/tickets.md). Here a place is
parsed into parts — estate, building, unit, floor, room, gate, named spot, and where at it — so two places are
compared part by part, a number only ever against a whole number (3 is never 13), and a place that names nothing
specific (`号`, `楼`, `小区`, `楼下`) matches nothing at all.

No I/O and no model: grid/duplicates.py decides duplicates with this and the descriptions' meaning; the early
warnings and recurring-problem statistics can group reports by place with the same functions.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

# --- numbers -------------------------------------------------------------------------------------------------------

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
# A Chinese numeral right before what it numbers (三号楼, 十三栋, 二单元, 五楼). 两 is left alone: 两栋楼 is two buildings.
_CHINESE_NUMBER = re.compile(r"[零〇一二三四五六七八九十百]+(?=号|栋|幢|座|单元|层|楼|室|户|期|区|门)")


def _chinese_to_int(numeral: str) -> int | None:
    """一 → 1, 十三 → 13, 二十一 → 21, 一百零二 → 102, 一零二 → 102 (read digit by digit)."""
    if all(ch in _DIGITS for ch in numeral):
        return int("".join(str(_DIGITS[ch]) for ch in numeral))
    total, current = 0, 0
    for ch in numeral:
        if ch in _DIGITS:
            current = _DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


def arabic_numerals(text: str) -> str:
    """三号楼 → 3号楼, 十三栋 → 13栋, 第二单元 → 第2单元; numerals not followed by a place word stay (一直, 两栋)."""

    def convert(match: re.Match[str]) -> str:
        value = _chinese_to_int(match.group(0))
        return match.group(0) if value is None else str(value)

    return _CHINESE_NUMBER.sub(convert, text)


# --- the parts of a place ------------------------------------------------------------------------------------------


class Spot(StrEnum):
    """Where at a building or named place: the vicinity words are one spot (门口 = 楼下 = 前面 = 旁边)."""

    NEAR = "门口"
    EAST = "东侧"
    WEST = "西侧"
    SOUTH = "南侧"
    NORTH = "北侧"
    BACK = "后面"
    STAIRWELL = "楼道"
    ROOF = "楼顶"
    BASEMENT = "地下"
    LIFT_HALL = "电梯间"


# The sides of a building the vicinity words (门口, 楼下, 旁边) may mean; 后面 is not 前面.
_SIDES = frozenset({Spot.EAST, Spot.WEST, Spot.SOUTH, Spot.NORTH})

_NEAR_WORDS = (
    "楼底下", "楼下面", "楼下边", "楼下", "楼前面", "楼前", "楼门口", "单元门口", "门口", "门前", "前面", "前边", "前头",
    "跟前", "底下", "下面", "下边", "旁边", "边上", "附近", "外面", "外边", "周边", "周围", "对面",
)  # fmt: skip
# Order matters: longer words first, so 楼底下 is not read as 楼 + 底下.
_SPOT_WORDS: tuple[tuple[str, Spot], ...] = (
    *((w, Spot.BASEMENT) for w in ("地下车库", "地下室", "负1楼", "负1层", "地库")),
    *((w, Spot.ROOF) for w in ("楼顶上", "楼顶", "顶楼", "天台", "屋顶", "房顶")),
    *((w, Spot.STAIRWELL) for w in ("楼梯间", "楼道里", "楼道", "楼梯口", "楼梯", "走廊", "过道")),
    *((w, Spot.LIFT_HALL) for w in ("电梯间", "电梯口", "电梯厅")),
    *((w, Spot.BACK) for w in ("背后", "后面", "后边", "后头", "楼后", "后侧")),
    *((w, Spot.NEAR) for w in _NEAR_WORDS),
)
_SIDE = re.compile(r"(东南|东北|西南|西北|东|西|南|北)(?:侧|边|面|头|角|墙)")
_SIDE_SPOT = {"东": Spot.EAST, "西": Spot.WEST, "南": Spot.SOUTH, "北": Spot.NORTH}

_ID = r"[0-9a-z]{1,6}"
# 3号楼, 3栋(楼), 3幢, 3座, 3号 (before where at it or nothing): a building. 3号门 is a gate; 幸福路5号 an address.
_BUILDING = re.compile(
    rf"(?<![0-9a-z])({_ID})(?:号楼|号栋|(?:栋|幢)(?:楼(?!顶|道|梯|上|里))?|座|号(?=$|东|西|南|北|前|后|旁|边|下|上|门口|对面|附近|外))"
)
_UNIT = re.compile(rf"(?:第)?(?<![0-9a-z])({_ID})单元")
_FLOOR = re.compile(r"(?:第)?(?<![0-9a-z])(\d{1,2})(?:层|楼)(?!道|梯|顶)")
_ROOM = re.compile(r"(?<![0-9a-z])(\d{3,4})(?:室|房|户|号房)?(?![0-9a-z])")
_GATE = re.compile(r"(?:(\d{1,2})号门(?!口)|(东南|东北|西南|西北|东|西|南|北|正)(?:大)?门(?:口)?|(?:小区)?(?:大门|正门)(?:口)?)")
_ROAD_NUMBER = re.compile(r"(路|街|巷|道)(\d{1,5})号")
# An estate's name: 阳光花园, 幸福里小区, 和平家园. What is left of a bare 小区 (or 我们小区) is no name.
_ESTATE = re.compile(r"^([\u4e00-\u9fff]{2,8}?(?:花园|家园|新村|公寓|小区|苑|园|里|村|府|庭|湾|城))")
_NOT_ESTATES = frozenset({"我们小区", "咱们小区", "这个小区", "本小区", "我家小区", "小区", "社区", "楼里", "家里", "院里"})
_SPOTS_NOT_ESTATES = re.compile(r"(?:幼儿园|公园|游乐园|菜园|校园|乐园|花园里)$")  # a spot in the estate, not its name
# 里 after these is "in", not an estate's 里 (幸福里): 小区里, 院子里, 楼道里, 电梯里 say where, not which estate.
_IN_FILLERS = frozenset({"小区", "院子", "楼道", "电梯"})
# Words that say nothing about where: fillers, the estate or building as a whole, pronouns.
_FILLER = re.compile(
    r"我们|咱们|我家|你们|他们|这个|那个|这边|那边|这里|那里|这儿|那儿|小区里|小区内|小区|社区|院子里|院子|院内|一带|位置|地方|"
    r"就在|之间|中间|里面|那条|这条|一条|在|的|那|这|里|内|处|上|下|中|和|与|跟|及|号|楼"
)
# What a named spot is called: a piece of text names one only when it ends like a place (停车场, 垃圾站, 幸福路5号,
# 幼儿园), so a sentence NLU mistook for a location (九月二十六号从深圳到宁波的航班) names nothing.
_PLACE_NOUN = re.compile(
    r"(?:场|站|园|门|口|路|街|巷|道|亭|棚|坛|柜|池|房|馆|店|所|桥|廊|墙|库|厅|院|坪|地|河|湖|沟|渠|中心|超市|市场|学校|医院|"
    r"小学|中学|器材|设施|路\d+号?|街\d+号?)$"
)
_TEXT = re.compile(r"[\s\W_]+")


@dataclass(frozen=True)
class Place:
    """A place as its parts; None (or "") for a part the resident did not say."""

    estate: str = ""
    building: str | None = None
    unit: str | None = None
    floor: str | None = None
    room: str | None = None
    gate: str | None = None
    named: str = ""  # a named spot: 停车场, 幸福路5号, 篮球场, 垃圾站
    spot: Spot | None = None

    @property
    def specific(self) -> bool:
        """Names a building, unit, room, gate or named spot: somewhere one worker walks to. An estate alone, 楼下
        alone, `号` or `小区` are not."""
        return bool(self.building or self.unit or self.room or self.gate or self.named)

    def __str__(self) -> str:
        parts = [
            self.estate,
            f"{self.building}栋" if self.building else "",
            f"{self.unit}单元" if self.unit else "",
            f"{self.floor}层" if self.floor else "",
            f"{self.room}室" if self.room else "",
            f"{self.gate}门" if self.gate else "",
            self.named,
        ]
        head = "".join(parts)
        return f"{head}·{self.spot.value}" if self.spot else head


# Words residents use for one thing: one of each pair is kept.
_SAME_WORDS = (("进口", "入口"), ("消火栓", "消防栓"), ("大门口", "大门"))


def _clean(text: str) -> str:
    folded = arabic_numerals(_TEXT.sub("", unicodedata.normalize("NFKC", text).lower()))
    for word, kept in _SAME_WORDS:
        folded = folded.replace(word, kept)
    return folded


def _take(pattern: re.Pattern[str], text: str) -> tuple[re.Match[str] | None, str]:
    """The first match and the text without it (a space keeps its neighbours apart)."""
    found = pattern.search(text)
    if found is None:
        return None, text
    return found, text[: found.start()] + " " + text[found.end() :]


def _is_in_word(name: str) -> bool:
    """停车场里, 地下车库里, 小区里: a place followed by 里 ("in"), which names no estate."""
    before = name.removesuffix("里")
    return before != name and (before in _IN_FILLERS or bool(_PLACE_NOUN.search(before)))


@lru_cache(maxsize=4096)
def parse_place(text: str) -> Place:
    """The parts of a place as a resident or NLU wrote it (`阳光花园三号楼2单元门口` → 阳光花园, 3, 2, 门口)."""
    rest = _clean(text)
    estate = ""
    found = _ESTATE.match(rest)
    if (
        found
        and found.group(1) not in _NOT_ESTATES
        and not _SPOTS_NOT_ESTATES.search(found.group(1))
        and not re.search(r"\d", found.group(1))
        and not _is_in_word(found.group(1))
    ):
        estate = found.group(1).removesuffix("小区") or found.group(1)
        rest = rest[found.end() :]
    rest = _ROAD_NUMBER.sub(r"\1#\2", rest)  # 幸福路5号 keeps its number as part of the name, not a building
    building, rest = _take(_BUILDING, rest)
    between = ""
    other, rest = _take(_BUILDING, rest) if building is not None else (None, rest)
    if building is not None and other is not None:
        # 3号楼和4号楼中间的路: the spot between two buildings, which is neither building's
        low, high = sorted((building.group(1), other.group(1)))
        between, building = f"{low}栋{high}栋之间", None
    gate, rest = _take(_GATE, rest)
    unit, rest = _take(_UNIT, rest)
    floor, rest = _take(_FLOOR, rest)
    room, rest = _take(_ROOM, rest)
    spot: Spot | None = None
    if building is not None and rest.lstrip().startswith("下"):
        spot = Spot.NEAR  # 3号楼下: "下" right after the building is 楼下
    for word, where in _SPOT_WORDS:
        if word in rest:
            spot = spot or where
            rest = rest.replace(word, " ", 1)
    side, rest = _take(_SIDE, rest)
    if side is not None and spot in (None, Spot.NEAR):
        spot = _SIDE_SPOT[side.group(1)[0]]
    chunks = [chunk for chunk in _FILLER.sub(" ", rest.replace("#", "")).split() if _PLACE_NOUN.search(chunk)]
    named = " ".join([between, *chunks] if between else chunks)
    gate_name = None
    if gate is not None:
        gate_name = gate.group(1) or gate.group(2) or "正"
    return Place(
        estate=estate,
        building=building.group(1) if building else None,
        unit=unit.group(1) if unit else None,
        floor=floor.group(1) if floor else None,
        room=room.group(1) if room else None,
        gate=gate_name,
        named=named if len(named.replace(" ", "")) >= 2 else "",
        spot=spot,
    )


def normalise_place(text: str) -> str:
    """One written form per spot: `三号楼前面`, `3栋楼下` and `3号楼门口` all give `3栋·门口`; "" when the text
    names nothing specific (`号`, `小区`, `楼下`)."""
    place = parse_place(text)
    return str(place) if place.specific else ""


def is_specific(text: str) -> bool:
    return parse_place(text).specific


# --- comparing two places ------------------------------------------------------------------------------------------


def _spots_agree(a: Spot | None, b: Spot | None) -> bool:
    """Unsaid agrees with anything; the vicinity (门口, 楼下…) with a side of the building (东侧), not with 后面 or
    inside (楼道, 楼顶, 地下); otherwise the same."""
    if a is None or b is None or a == b:
        return True
    return Spot.NEAR in (a, b) and bool({a, b} & _SIDES)


_NUMBER_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyz")


def _named_inside(short: str, long: str) -> bool:
    """One named spot inside the other (停车场 in 西门停车场), but never a number inside a longer one (5 in 15)."""
    if not short or not long:
        return False
    start = long.find(short)
    while start != -1:
        end = start + len(short)
        glued_before = start > 0 and long[start - 1] in _NUMBER_CHARS and short[0] in _NUMBER_CHARS
        glued_after = end < len(long) and long[end] in _NUMBER_CHARS and short[-1] in _NUMBER_CHARS
        if not (glued_before or glued_after):
            return True
        start = long.find(short, start + 1)
    return False


def _names_agree(a: str, b: str) -> bool:
    """One name inside the other (停车场, 地下停车场) — but a bare two-character spot (路口, 门口, 东门) inside a longer
    name is any such spot anywhere: `路口` is not `幸福路口` and not `abc路口`."""
    a, b = a.replace(" ", ""), b.replace(" ", "")
    short, long = sorted((a, b), key=len)
    if short != long and len(short) <= 2:
        return False
    return _named_inside(short, long)


@dataclass(frozen=True)
class PlaceMatch:
    """Two places compared: the same spot or not, and whether they also share the estate's name (which makes two
    neighbouring grids' `3号楼` one building rather than two estates' 3号楼)."""

    same: bool
    same_estate: bool = False


def compare_places(a: str | Place, b: str | Place) -> PlaceMatch:
    """The same spot when both are specific, no part both name differs (a number only equals a whole number), where
    at it agrees, and at least one part is shared: a building, unit, room, gate or named spot."""
    pa = a if isinstance(a, Place) else parse_place(a)
    pb = b if isinstance(b, Place) else parse_place(b)
    if not (pa.specific and pb.specific):
        return PlaceMatch(False)
    if pa.floor and pb.floor and pa.floor != pb.floor:
        return PlaceMatch(False)
    shared = False  # a floor number alone anchors nothing: every building has a 5楼
    for left, right in ((pa.building, pb.building), (pa.unit, pb.unit), (pa.room, pb.room), (pa.gate, pb.gate)):
        if left and right:
            if left != right:
                return PlaceMatch(False)
            shared = True
    if pa.estate and pb.estate and not _names_agree(pa.estate, pb.estate):
        return PlaceMatch(False)
    if pa.named and pb.named:
        if not _names_agree(pa.named, pb.named):
            return PlaceMatch(False)
        shared = True
    elif (pa.named or pb.named) and not ((pa.building and pb.building) or (pa.gate and pb.gate)):
        return PlaceMatch(False)  # 停车场 and 3号楼 share no part: two places
    if not _spots_agree(pa.spot, pb.spot) or not shared:
        return PlaceMatch(False)
    return PlaceMatch(True, same_estate=bool(pa.estate and pb.estate))


def same_spot(a: str, b: str) -> bool:
    """`3号楼门口` and `三号楼前面`: yes; `3号楼` and `13号楼`: no; `号` and `2号楼`: no (`号` names no place)."""
    return compare_places(a, b).same


def without_place(description: str, location: str) -> str:
    """The description with the place taken out, so comparing two descriptions compares their problems: `3号楼东侧
    的井盖丢了` and `5号楼东侧的井盖丢了` say the same thing about two places."""
    text = description
    if location.strip() and location.strip() in text:
        text = text.replace(location.strip(), " ")
    text = arabic_numerals(unicodedata.normalize("NFKC", text))
    text = _BUILDING.sub(" ", text)
    text = _UNIT.sub(" ", text)
    return " ".join(text.split()) or description


__all__ = [
    "Place",
    "PlaceMatch",
    "Spot",
    "arabic_numerals",
    "compare_places",
    "is_specific",
    "normalise_place",
    "parse_place",
    "same_spot",
    "without_place",
]
