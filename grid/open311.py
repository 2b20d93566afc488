"""How tickets look through Open311 GeoReport v2: service codes, the open/closed status and the texts shown.

The open/closed code is GeoReport's own and mapped here; what a status means in words (status_notes) comes from the
ticket names every reader shares (grid/data/ticket_labels.yml, grid/labels.py).

Pure mapping, no database and no HTTP, so the 12345 hotline's view of a ticket is defined in one place and
can be read (and tested) without the API around it.

Service codes are ASCII and fixed here rather than derived from the Chinese category names at run time:
an external system stores the code with every request it files, so a code must not change when a category
is renamed, and Chinese in a URL query or an XML element name trips up older Open311 clients.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from grid.categories import Category, load_categories
from grid.labels import status_note
from grid.workflow import Status


@dataclass(frozen=True)
class ServiceSpec:
    code: str
    group: str
    description: str


# Category name (grid/data/categories.yml) → its Open311 service. Text values are data shown to callers.
SERVICE_SPECS: dict[str, ServiceSpec] = {
    "安全隐患": ServiceSpec("safety", "安全", "燃气泄漏、电线裸露、消防通道堵塞等危及安全的隐患，立行立改"),
    "水电气暖": ServiceSpec("utilities", "民生保障", "停水、停电、供暖、燃气、水管爆裂等"),
    "市政设施": ServiceSpec("municipal", "城市管理", "路灯、井盖、路面、护栏、排水等市政设施损坏"),
    "物业管理": ServiceSpec("property", "民生保障", "楼道灯、电梯、门禁、车库等物业管理问题"),
    "环境卫生": ServiceSpec("sanitation", "城市管理", "垃圾堆放、卫生死角、虫鼠害等环境卫生问题"),
    "噪音扰民": ServiceSpec("noise", "社会治理", "装修、广场舞、喇叭等噪音扰民"),
    "占道经营与市容": ServiceSpec("street_order", "城市管理", "占道经营、乱摆摊、小广告、乱停放等市容问题"),
    "邻里纠纷": ServiceSpec("neighbour_dispute", "社会治理", "漏水、占用公共空间等邻里纠纷"),
    "违章搭建": ServiceSpec("illegal_building", "城市管理", "私搭乱建、违章加盖，需多部门联合处置"),
    "其他": ServiceSpec("other", "其他", "其他需要网格员处理的问题"),
}
FALLBACK_GROUP = "其他"

# GeoReport knows only open and closed. Resolved and reviewed tickets count as open: the resident has not
# rated the result yet and may still reopen it, so the caller should keep following them. Merged tickets are
# closed here; the ticket they were merged into carries the work on.
CLOSED_STATUSES = frozenset({Status.CLOSED, Status.CANCELLED, Status.MERGED})
OPEN311_STATUSES = ("open", "closed")

# Events whose note is an internal reference (a worker id, "pool", a rating word) rather than a sentence.
MACHINE_NOTE_ACTIONS = frozenset({"submit", "dispatch", "accept", "close", "co_report", "merge_in", "urge", "triage"})

DEFAULT_REPORTER_NAME = "12345热线"
NOTICE_DISPATCHED = "已受理，已派发至{grid}，处理时限至{deadline}。"
NOTICE_WAITING = "已受理，等待{grid}所在社区派单，处理时限至{deadline}。"
NOTICE_DUPLICATE = "同一地点的同类问题已有工单{number}正在处理，本次反映已并入该工单。"
MERGED_INTO = "与工单{number}重复，已合并"


def service_code(category_name: str) -> str:
    """The category's service code; a category missing from the table still gets a stable ASCII code."""
    spec = SERVICE_SPECS.get(category_name)
    if spec is not None:
        return spec.code
    return "category-" + hashlib.sha1(category_name.encode("utf-8")).hexdigest()[:8]


def service_group(category_name: str) -> str:
    spec = SERVICE_SPECS.get(category_name)
    return spec.group if spec else FALLBACK_GROUP


def service_description(category: Category) -> str:
    spec = SERVICE_SPECS.get(category.name)
    base = spec.description if spec else category.name
    return f"{base}（处理时限{category.deadline_hours}小时）"


def categories_by_code() -> dict[str, Category]:
    """Service code → category, for reading service_code arguments."""
    return {service_code(c.name): c for c in load_categories()}


def open311_status(status: str) -> str:
    return "closed" if Status(status) in CLOSED_STATUSES else "open"


def statuses_for(open311: str) -> list[str]:
    """The ticket statuses behind one GeoReport status, for filtering in SQL."""
    closed = open311 == "closed"
    return sorted(s.value for s in Status if (s in CLOSED_STATUSES) == closed)


def status_notes(status: str, result: str | None, last_action: str | None, last_note: str | None) -> str:
    """Why the request stands where it does: the handler's result once there is one, else the latest readable note."""
    current = Status(status)
    if current is Status.MERGED and last_action == "merge" and last_note:
        return MERGED_INTO.format(number=last_note)
    if result and current in (Status.RESOLVED, Status.REVIEWED, Status.CLOSED):
        return result
    note = _readable(last_note) if last_action not in MACHINE_NOTE_ACTIONS else None
    return note or status_note(current)  # the status's sentence in grid/data/ticket_labels.yml


def _readable(note: str | None) -> str | None:
    """A transfer or escalation note reads "→ worker-5：reason": the caller gets the reason, not the internal id."""
    if note and note.startswith("→"):
        _, _, reason = note.partition("：")
        return reason.strip() or None
    return note


def w3_datetime(value: datetime | None) -> str | None:
    """The w3 subset of ISO 8601 GeoReport asks for, in UTC with a Z."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def reporter_identity(
    account_id: str | None, phone: str | None, email: str | None, first_name: str | None, last_name: str | None
) -> tuple[str, str]:
    """reporter_id and name for a request from outside the chat: the most stable id the caller gave.

    A Chinese name runs family name first without a space (张 + 三 → 张三); a Latin one stays "John Smith".
    """
    key = next((v.strip() for v in (account_id, phone, email) if v and v.strip()), "anonymous")
    first, last = (first_name or "").strip(), (last_name or "").strip()
    if first.isascii() and last.isascii():
        name = " ".join(part for part in (first, last) if part)
    else:
        name = last + first
    return f"open311:{key}", name or DEFAULT_REPORTER_NAME
