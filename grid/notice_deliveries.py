"""Notice deliveries: planning one row per notice × group, and the state changes a delivery job makes.

Every change is a conditional UPDATE, so two jobs for the same delivery (a duplicate, a retry that raced
the original, a restarted worker) never both proceed: a job first *claims* the row (status sending, its
token, a lease), and each part it sends is recorded only while that claim holds and only once
(`parts_sent` moves from k to k+1). A claim whose holder died is taken over when its lease runs out.

What "sent" means per channel is the caller's business (bot/notices/delivery.py): for the web chat the
transcript row is written in the same transaction as `record_part`, so it is exactly once; for external
platforms the part is sent first and recorded after, so it is at least once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from grid.notices import DeliveryStatus, Notice, NoticeDelivery, NoticeStatus, delivery_counts, targeted_groups
from storage.upsert import insert_ignoring_conflicts

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PlanResult:
    notice_id: int
    created: int  # rows written now
    targeted: int  # groups the target selects (rows that exist afterwards)
    status: str  # the notice's status afterwards


def plan_notice(session: Session, notice_id: int, now: datetime) -> PlanResult:
    """Create the delivery rows of a due notice, all due now; only the first of racing planners does anything.

    The notice's move from scheduled to sending is the planner's claim (a conditional UPDATE, and the first
    statement, so on SQLite it also takes the write lock before anything is read): a second planner finds
    it taken and creates nothing. A notice that expired before anything planned it (no process ran at its
    publish time) is closed with no deliveries: it is no longer news.
    """
    claimed = session.execute(
        update(Notice)
        .where(Notice.id == notice_id, Notice.status == NoticeStatus.SCHEDULED, Notice.publish_at <= now)
        .values(status=NoticeStatus.SENDING, planned_at=now)
        .execution_options(synchronize_session=False)
    )
    notice = session.get(Notice, notice_id)
    if notice is None:
        return PlanResult(notice_id, 0, 0, "missing")
    session.refresh(notice)
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return PlanResult(notice_id, 0, 0, notice.status)
    if notice.expires_at is not None and notice.expires_at <= now:
        notice.status, notice.finished_at = NoticeStatus.DONE, now
        log.warning("notice %d expired before it could be published; nothing sent", notice_id)
        return PlanResult(notice_id, 0, 0, notice.status)
    places = targeted_groups(session, notice.notice_target)
    rows = [
        {
            "notice_id": notice_id,
            "group_id": place.group_id,
            "channel": place.channel,
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "parts_sent": 0,
            "next_attempt_at": now,
        }
        for place in places
    ]
    if rows:
        # Racing planners end with one row per group.
        insert_ignoring_conflicts(session, NoticeDelivery.__table__, rows, ["notice_id", "group_id"])
    return PlanResult(notice_id, len(rows), len(places), notice.status)


def due_notice_ids(session: Session, now: datetime) -> list[int]:
    """Scheduled notices whose publish time has come: what a sweep plans when their own job did not run."""
    query = select(Notice.id).where(Notice.status == NoticeStatus.SCHEDULED, Notice.publish_at <= now).order_by(Notice.id)
    return list(session.scalars(query))


def delivery_ids(session: Session, notice_id: int) -> list[int]:
    query = select(NoticeDelivery.id).where(
        NoticeDelivery.notice_id == notice_id, NoticeDelivery.status.in_(DeliveryStatus.ACTIVE)
    )
    return list(session.scalars(query.order_by(NoticeDelivery.id)))


def due_delivery_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Deliveries that should be in the queue now: pending and due, or claimed by a holder whose lease ran out."""
    query = (
        select(NoticeDelivery.id)
        .where(
            or_(
                and_(NoticeDelivery.status == DeliveryStatus.PENDING, NoticeDelivery.next_attempt_at <= now),
                and_(NoticeDelivery.status == DeliveryStatus.SENDING, NoticeDelivery.claimed_until <= now),
            )
        )
        .order_by(NoticeDelivery.next_attempt_at, NoticeDelivery.id)
        .limit(limit)
    )
    return list(session.scalars(query))


# --- one delivery's life -------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A delivery this job holds, with what it needs to send it."""

    delivery_id: int
    notice_id: int
    group_id: str
    channel: str
    parts_sent: int
    attempts: int


@dataclass(frozen=True)
class Skip:
    """Why a job did not get the delivery: finished (`final`), or not now (`retry_at`)."""

    reason: str
    retry_at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.retry_at is None


def _mine_or_free(token: str, now: datetime) -> Any:
    return or_(
        NoticeDelivery.status == DeliveryStatus.PENDING,
        and_(
            NoticeDelivery.status == DeliveryStatus.SENDING,
            or_(NoticeDelivery.claim_token == token, NoticeDelivery.claimed_until <= now),
        ),
    )


def _close_unstarted(session: Session, delivery_id: int, token: str, now: datetime, status: str) -> None:
    session.execute(
        update(NoticeDelivery)
        .where(NoticeDelivery.id == delivery_id, NoticeDelivery.parts_sent == 0, _mine_or_free(token, now))
        .values(status=status, claim_token=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


def claim(session: Session, delivery_id: int, token: str, now: datetime, lease: timedelta) -> Claim | Skip:
    """Take the delivery for `token` until now + lease, or say why not.

    A notice cancelled or expired before anything of it reached this group closes the delivery instead.
    The same token may claim again (a retried job continues its own delivery). The usual case is one
    UPDATE … RETURNING; only when it takes nothing is the row read to find out why.
    """
    notice_still_wanted = or_(
        NoticeDelivery.parts_sent > 0,  # a message partly out is finished whatever happened to the notice
        exists().where(
            Notice.id == NoticeDelivery.notice_id,
            Notice.status != NoticeStatus.CANCELLED,
            or_(Notice.expires_at.is_(None), Notice.expires_at > now),
        ),
    )
    taken = session.execute(
        update(NoticeDelivery)
        .where(
            NoticeDelivery.id == delivery_id,
            NoticeDelivery.next_attempt_at <= now,
            _mine_or_free(token, now),
            notice_still_wanted,
        )
        .values(status=DeliveryStatus.SENDING, claim_token=token, claimed_until=now + lease)
        .returning(
            NoticeDelivery.notice_id,
            NoticeDelivery.group_id,
            NoticeDelivery.channel,
            NoticeDelivery.parts_sent,
            NoticeDelivery.attempts,
        )
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if taken is not None:
        return Claim(delivery_id, taken.notice_id, taken.group_id, taken.channel, taken.parts_sent, taken.attempts)
    return _why_not(session, delivery_id, token, now, lease)


def _why_not(session: Session, delivery_id: int, token: str, now: datetime, lease: timedelta) -> Skip:
    delivery = session.get(NoticeDelivery, delivery_id)
    if delivery is None:
        return Skip("missing")
    if delivery.status not in DeliveryStatus.ACTIVE:
        return Skip(delivery.status)
    notice = session.get(Notice, delivery.notice_id)
    assert notice is not None
    if delivery.parts_sent == 0:
        if notice.status == NoticeStatus.CANCELLED:
            _close_unstarted(session, delivery_id, token, now, DeliveryStatus.CANCELLED)
            return Skip(DeliveryStatus.CANCELLED)
        if notice.expires_at is not None and notice.expires_at <= now:
            _close_unstarted(session, delivery_id, token, now, DeliveryStatus.EXPIRED)
            return Skip(DeliveryStatus.EXPIRED)
    if delivery.next_attempt_at > now:
        return Skip("not_due", delivery.next_attempt_at)
    return Skip("busy", delivery.claimed_until or now + lease)


def record_part(
    session: Session,
    delivery_id: int,
    token: str,
    index: int,
    total: int,
    now: datetime,
    lease: timedelta,
    *,
    already_out: bool = False,
) -> bool:
    """Record part `index` (0-based) of `total` as out, if this claim still holds and nobody recorded it.

    Returns False when it may not be recorded: the caller must then not send it (web chat: the transcript
    row is rolled back with this). `already_out` is for a part a platform has taken: it is recorded even if
    the notice was cancelled meanwhile, because the record must say what residents saw.
    """
    last = index + 1 == total
    values: dict[str, Any] = {"parts_sent": index + 1, "claimed_until": now + lease}
    if last:
        values |= {"status": DeliveryStatus.SENT, "sent_at": now, "claim_token": None, "claimed_until": None, "last_error": None}
    statuses = (DeliveryStatus.SENDING, DeliveryStatus.CANCELLED) if already_out else (DeliveryStatus.SENDING,)
    result = session.execute(
        update(NoticeDelivery)
        .where(
            NoticeDelivery.id == delivery_id,
            NoticeDelivery.claim_token == token,
            NoticeDelivery.parts_sent == index,
            NoticeDelivery.status.in_(statuses),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def record_failure(
    session: Session, delivery_id: int, token: str, error: str, now: datetime, retry_at: datetime | None
) -> int | None:
    """Count a failed attempt and release the claim; `retry_at` None gives up (status failed).

    Returns the attempts made so far, or None when the claim was no longer this job's.
    """
    delivery = session.get(NoticeDelivery, delivery_id)
    if delivery is None or delivery.claim_token != token or delivery.status != DeliveryStatus.SENDING:
        return None
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:1000], "claim_token": None, "claimed_until": None}
    if retry_at is None:
        values["status"] = DeliveryStatus.FAILED
    else:
        values |= {"status": DeliveryStatus.PENDING, "next_attempt_at": retry_at}
    result = session.execute(
        update(NoticeDelivery)
        .where(NoticeDelivery.id == delivery_id, NoticeDelivery.claim_token == token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return attempts if result.rowcount == 1 else None  # type: ignore[attr-defined]


def release(session: Session, delivery_id: int, token: str, retry_at: datetime) -> None:
    """Give the claim back without counting an attempt (waiting for the rate limit): due again at `retry_at`."""
    session.execute(
        update(NoticeDelivery)
        .where(
            NoticeDelivery.id == delivery_id,
            NoticeDelivery.claim_token == token,
            NoticeDelivery.status == DeliveryStatus.SENDING,
        )
        .values(status=DeliveryStatus.PENDING, claim_token=None, claimed_until=None, next_attempt_at=retry_at)
        .execution_options(synchronize_session=False)
    )


# --- progress ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeProgress:
    notice_id: int
    title: str
    status: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def active(self) -> int:
        return sum(self.counts[s] for s in DeliveryStatus.ACTIVE)


def progress(session: Session, now: datetime) -> list[NoticeProgress]:
    """Counts of every notice still sending; one whose deliveries have all finished is marked done here."""
    notices = list(session.scalars(select(Notice).where(Notice.status == NoticeStatus.SENDING).order_by(Notice.id)))
    counts = delivery_counts(session, [n.id for n in notices])
    report: list[NoticeProgress] = []
    for notice in notices:
        item = NoticeProgress(notice.id, notice.title, notice.status, counts[notice.id])
        if item.active == 0:
            finished = session.execute(
                update(Notice)
                .where(Notice.id == notice.id, Notice.status == NoticeStatus.SENDING)
                .values(status=NoticeStatus.DONE, finished_at=now)
                .execution_options(synchronize_session=False)
            )
            if finished.rowcount == 1:  # type: ignore[attr-defined]
                item = NoticeProgress(notice.id, notice.title, NoticeStatus.DONE, item.counts)
        report.append(item)
    return report
