"""Benefit notices (惠民信息): what an admin publishes, to whom, when, and until when.

A notice names its audience by place (every group, or streets, communities, grids) and optionally narrows
it by group tags (老年人多); it is planned into one delivery per targeted group at its publish time
(grid/notice_deliveries.py) and stays "current" for residents who ask until it expires or is cancelled.
Nothing here knows about channels, queues or HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from grid.geography import ChatGroup, Grid, Region
from storage.base import Base, utcnow
from storage.types import UTCDateTime

TITLE_MAX = 100
BODY_MAX = 2000
URL_MAX = 512
AUTHOR_MAX = 64
TAG_MAX = 32
TARGET_CODES_MAX = 500


class NoticeStatus:
    SCHEDULED = "scheduled"  # waiting for its publish time
    SENDING = "sending"  # planned: deliveries exist and some are still due
    DONE = "done"  # every delivery has finished (sent, failed, expired)
    CANCELLED = "cancelled"


class DeliveryStatus:
    PENDING = "pending"  # due at next_attempt_at; parts_sent > 0 when a long text was partly out before a failure
    SENDING = "sending"  # claimed by one job until claimed_until
    SENT = "sent"
    FAILED = "failed"  # gave up after the last attempt, or the platform said retrying cannot help
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # the notice expired before it reached this group

    ACTIVE = (PENDING, SENDING)
    ALL = (PENDING, SENDING, SENT, FAILED, CANCELLED, EXPIRED)


class NoticeError(Exception):
    """A notice request that cannot be carried out; `code` keys the sentence in bot/texts/zh.yml `notice_errors`."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(f"{code} {params}" if params else code)
        self.code = code
        self.params = params


class Notice(Base):
    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    body: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(URL_MAX), default=None)
    image_url: Mapped[str | None] = mapped_column(String(URL_MAX), default=None)
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    publish_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    author: Mapped[str] = mapped_column(String(AUTHOR_MAX))
    status: Mapped[str] = mapped_column(String(16), default=NoticeStatus.SCHEDULED, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(AUTHOR_MAX), default=None)

    @property
    def notice_target(self) -> NoticeTarget:
        return NoticeTarget.from_json(self.target)

    def is_current(self, now: datetime) -> bool:
        return (
            self.status != NoticeStatus.CANCELLED
            and self.publish_at <= now
            and (self.expires_at is None or self.expires_at > now)
        )


class NoticeDelivery(Base):
    """One notice to one group: the unit that is claimed, sent, retried, cancelled and shown per group."""

    __tablename__ = "notice_deliveries"
    __table_args__ = (
        UniqueConstraint("notice_id", "group_id"),
        Index("ix_notice_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"))
    group_id: Mapped[str] = mapped_column(ForeignKey("chat_groups.id"))
    channel: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # A long text goes out in parts; the count lets a retried or restarted job continue after the last one sent.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claim_token: Mapped[str | None] = mapped_column(String(128), default=None)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


# --- targets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupPlace:
    """Where a group sits and what it is tagged with: all a target needs to decide whether it is included."""

    group_id: str
    grid_code: str
    community_code: str
    street_code: str | None
    tags: frozenset[str] = frozenset()
    channel: str = "webchat"


@dataclass(frozen=True)
class NoticeTarget:
    """Places select groups (any of them), tags then narrow to groups carrying any of the tags.

    `everyone` stands for every place; tags alone also mean every place, narrowed by the tags.
    """

    everyone: bool = False
    streets: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def has_places(self) -> bool:
        return bool(self.streets or self.communities or self.grids)

    def matches(self, place: GroupPlace) -> bool:
        in_place = (
            self.everyone
            or not self.has_places
            or place.grid_code in self.grids
            or place.community_code in self.communities
            or (place.street_code is not None and place.street_code in self.streets)
        )
        return in_place and (not self.tags or not place.tags.isdisjoint(self.tags))

    def to_json(self) -> dict[str, Any]:
        return {
            "all": self.everyone,
            "streets": list(self.streets),
            "communities": list(self.communities),
            "grids": list(self.grids),
            "tags": list(self.tags),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NoticeTarget:
        return cls(
            everyone=bool(data.get("all")),
            streets=tuple(data.get("streets") or ()),
            communities=tuple(data.get("communities") or ()),
            grids=tuple(data.get("grids") or ()),
            tags=tuple(data.get("tags") or ()),
        )


def group_places(session: Session, group_ids: Sequence[str] | None = None) -> list[GroupPlace]:
    """Every group (or the named ones) with its grid, community, street and tags, in one query."""
    community = Region.__table__.alias("community")
    query = (
        select(ChatGroup.id, ChatGroup.grid_code, Grid.community_code, community.c.parent_code, ChatGroup.tags, ChatGroup.channel)
        .join(Grid, Grid.code == ChatGroup.grid_code)
        .join(community, community.c.code == Grid.community_code)
        .order_by(ChatGroup.id)
    )
    if group_ids is not None:
        query = query.where(ChatGroup.id.in_(group_ids))
    return [
        GroupPlace(gid, grid, comm, street, frozenset(tags or ()), channel)
        for gid, grid, comm, street, tags, channel in session.execute(query)
    ]


def targeted_groups(session: Session, target: NoticeTarget) -> list[GroupPlace]:
    return [place for place in group_places(session) if target.matches(place)]


def targeted_group_ids(session: Session, target: NoticeTarget) -> list[str]:
    return [place.group_id for place in targeted_groups(session, target)]


# --- creating, cancelling ------------------------------------------------------------------------


@dataclass
class NoticeDraft:
    title: str
    body: str
    author: str
    target: NoticeTarget
    publish_at: datetime | None = None  # None: now
    expires_at: datetime | None = None  # None: current until cancelled
    link: str | None = None
    image_url: str | None = None


def _clean_url(value: str | None, code: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > URL_MAX or not value.startswith(("http://", "https://")) or any(c.isspace() for c in value):
        raise NoticeError(code, url=value[:80])
    return value


def _unknown(session: Session, model: type[Region] | type[Grid], codes: Iterable[str], level: str | None = None) -> list[str]:
    wanted = set(codes)
    if not wanted:
        return []
    query = select(model.code).where(model.code.in_(wanted))
    if level is not None:
        query = query.where(Region.level == level)
    return sorted(wanted - set(session.scalars(query)))


def validate_target(session: Session, target: NoticeTarget) -> NoticeTarget:
    """Known codes only (a typo must not silently reach nobody), and an audience named on purpose."""
    lists = {"streets": target.streets, "communities": target.communities, "grids": target.grids, "tags": target.tags}
    cleaned = {name: tuple(dict.fromkeys(v.strip() for v in values if v.strip())) for name, values in lists.items()}
    if any(len(values) > TARGET_CODES_MAX for values in cleaned.values()):
        raise NoticeError("target_too_long", limit=TARGET_CODES_MAX)
    result = NoticeTarget(everyone=target.everyone, **cleaned)
    if result.everyone and result.has_places:
        raise NoticeError("target_all_and_places")
    if not (result.everyone or result.has_places or result.tags):
        raise NoticeError("target_empty")
    for name, model, level in (("streets", Region, "street"), ("communities", Region, "community"), ("grids", Grid, None)):
        unknown = _unknown(session, model, cleaned[name], level)
        if unknown:
            raise NoticeError(f"unknown_{name}", codes="、".join(unknown))
    if any(len(tag) > TAG_MAX for tag in result.tags):
        raise NoticeError("tag_too_long", limit=TAG_MAX)
    carried = {tag for tags in session.scalars(select(ChatGroup.tags)) for tag in (tags or ())}
    unknown_tags = sorted(set(result.tags) - carried)
    if unknown_tags:
        raise NoticeError("unknown_tags", codes="、".join(unknown_tags))
    return result


def create_notice(session: Session, draft: NoticeDraft, now: datetime | None = None) -> Notice:
    """Validate and store a notice; nothing is written when any part is refused."""
    now = now or utcnow()
    title, body, author = draft.title.strip(), draft.body.strip(), draft.author.strip()
    if not title:
        raise NoticeError("empty_title")
    if len(title) > TITLE_MAX:
        raise NoticeError("title_too_long", limit=TITLE_MAX)
    if not body:
        raise NoticeError("empty_body")
    if len(body) > BODY_MAX:
        raise NoticeError("body_too_long", limit=BODY_MAX, length=len(body))
    if not author or len(author) > AUTHOR_MAX:
        raise NoticeError("bad_author", limit=AUTHOR_MAX)
    for moment in (draft.publish_at, draft.expires_at):
        if moment is not None and moment.tzinfo is None:
            raise ValueError("naive datetime given for a notice time")
    # A publish time already past means "now": the planner would send it at once anyway.
    publish_at = draft.publish_at if draft.publish_at is not None and draft.publish_at > now else now
    if draft.expires_at is not None and draft.expires_at <= publish_at:
        raise NoticeError("expires_before_publish")
    target = validate_target(session, draft.target)
    notice = Notice(
        title=title,
        body=body,
        link=_clean_url(draft.link, "bad_link"),
        image_url=_clean_url(draft.image_url, "bad_image_url"),
        target=target.to_json(),
        publish_at=publish_at,
        expires_at=draft.expires_at,
        author=author,
        status=NoticeStatus.SCHEDULED,
        created_at=now,
    )
    session.add(notice)
    session.flush()
    return notice


def get_notice(session: Session, notice_id: int) -> Notice:
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise NoticeError("notice_not_found", id=notice_id)
    return notice


def cancel_notice(session: Session, notice_id: int, by: str, now: datetime | None = None) -> tuple[Notice, int]:
    """Stop every delivery that has nothing out yet; returns the notice and how many were stopped.

    A delivery whose long text is partly out is left to finish, so no group is left with half a notice.
    A notice whose deliveries have all finished cannot be cancelled: there is nothing left to stop.
    """
    now = now or utcnow()
    notice = session.get(Notice, notice_id, with_for_update=True)
    if notice is None:
        raise NoticeError("notice_not_found", id=notice_id)
    if notice.status in (NoticeStatus.DONE, NoticeStatus.CANCELLED):
        raise NoticeError("notice_finished", id=notice_id, status=notice.status)
    notice.status = NoticeStatus.CANCELLED
    notice.cancelled_at = now
    notice.cancelled_by = by.strip()[:AUTHOR_MAX] or "admin"
    stopped = session.execute(
        update(NoticeDelivery)
        .where(
            NoticeDelivery.notice_id == notice_id,
            NoticeDelivery.status.in_(DeliveryStatus.ACTIVE),
            NoticeDelivery.parts_sent == 0,
        )
        # The claim token stays: a platform call already in flight can still record that its part went out.
        .values(status=DeliveryStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    return notice, max(stopped.rowcount, 0)  # type: ignore[attr-defined]


# --- reading -------------------------------------------------------------------------------------


def current_notices(session: Session, group_id: str | None, now: datetime | None = None, limit: int = 5) -> list[Notice]:
    """What a resident asking 最近有什么通知 gets: published, not expired, not cancelled, aimed at their group.

    Someone asking in private chat has no group, so only notices for everyone (no tags) apply.
    """
    now = now or utcnow()
    query = (
        select(Notice)
        .where(Notice.status != NoticeStatus.CANCELLED, Notice.publish_at <= now)
        .where((Notice.expires_at.is_(None)) | (Notice.expires_at > now))
        .order_by(Notice.publish_at.desc(), Notice.id.desc())
    )
    places = group_places(session, [group_id]) if group_id else []
    found: list[Notice] = []
    for notice in session.scalars(query):
        target = notice.notice_target
        if places:
            wanted = target.matches(places[0])
        else:
            wanted = target.everyone and not target.tags
        if wanted:
            found.append(notice)
            if len(found) >= limit:
                break
    return found


def delivery_counts(session: Session, notice_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per notice, how many deliveries are in each status (every status present, zero when none)."""
    counts = {notice_id: dict.fromkeys(DeliveryStatus.ALL, 0) for notice_id in notice_ids}
    if not notice_ids:
        return counts
    query = (
        select(NoticeDelivery.notice_id, NoticeDelivery.status, func.count())
        .where(NoticeDelivery.notice_id.in_(notice_ids))
        .group_by(NoticeDelivery.notice_id, NoticeDelivery.status)
    )
    for notice_id, status, count in session.execute(query):
        counts[notice_id][status] = count
    return counts
