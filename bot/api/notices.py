"""Benefit notices over REST: create, list, detail with per-group delivery status, cancel.

Refusals carry a code and a Chinese sentence: 422 for a notice that cannot be sent as given (empty title,
unknown target codes, expiry before publish…; nothing is written), 404 unknown notice, 409 cancelling a
notice that has finished. Admins create and cancel, recorded as their account's display name; any account reads.
Times without a zone are read as the city's local time (Asia/Shanghai).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.api.deps import ServicesDep
from bot.auth.deps import Admin, AnyAccount
from bot.notices.render import error_sentence
from bot.notices.service import NoticeService
from grid.clock import LOCAL_TZ
from grid.geography import ChatGroup
from grid.notices import (
    AUTHOR_MAX,
    BODY_MAX,
    TITLE_MAX,
    URL_MAX,
    Notice,
    NoticeDelivery,
    NoticeDraft,
    NoticeError,
    NoticeTarget,
    cancel_notice,
    create_notice,
    delivery_counts,
    get_notice,
)
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/notices", tags=["notices"])

_STATUS = {"notice_not_found": 404, "notice_finished": 409}


def get_notice_service(request: Request) -> NoticeService:
    return request.app.state.notices


NoticeServiceDep = Annotated[NoticeService, Depends(get_notice_service)]
Code = Annotated[str, Field(min_length=1, max_length=64)]


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: bool = Field(default=False, description="Every group; may be narrowed by tags, not combined with places.")
    streets: list[Code] = Field(default_factory=list, max_length=500)
    communities: list[Code] = Field(default_factory=list, max_length=500)
    grids: list[Code] = Field(default_factory=list, max_length=500)
    tags: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=50, description="Only groups carrying any of these tags (老年人多…)."
    )

    def to_target(self) -> NoticeTarget:
        return NoticeTarget(self.all, tuple(self.streets), tuple(self.communities), tuple(self.grids), tuple(self.tags))


class NoticeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(max_length=TITLE_MAX)
    body: str = Field(max_length=BODY_MAX)
    link: str | None = Field(default=None, max_length=URL_MAX)
    image_url: str | None = Field(default=None, max_length=URL_MAX)
    target: TargetIn
    publish_at: datetime | None = Field(default=None, description="Default and any past time: now.")
    expires_at: datetime | None = Field(default=None, description="Default: current until cancelled.")


class NoticeOut(BaseModel):
    id: int
    title: str
    body: str
    link: str | None
    image_url: str | None
    target: dict[str, Any]
    publish_at: datetime
    expires_at: datetime | None
    author: str
    status: Literal["scheduled", "sending", "done", "cancelled"]
    created_at: datetime
    planned_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    deliveries: dict[str, int] = Field(description="How many groups are in each delivery status.")


class CreatedOut(NoticeOut):
    queued: bool = Field(description="False when the queue (Redis) was unreachable: saved; the sweep plans it later.")


class DeliveryOut(BaseModel):
    group_id: str
    group_name: str
    status: str
    attempts: int
    parts_sent: int
    sent_at: datetime | None
    next_attempt_at: datetime
    last_error: str | None


class NoticeDetail(NoticeOut):
    groups: list[DeliveryOut]


class CancelledOut(NoticeOut):
    stopped: int = Field(description="Deliveries stopped by this cancel (nothing of them had gone out).")


def _name(name: str) -> str:
    """An account's name as a notice records its author or canceller (the column is AUTHOR_MAX long)."""
    return name[:AUTHOR_MAX]


def _local(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=LOCAL_TZ)


def _refusal(err: NoticeError) -> HTTPException:
    return HTTPException(_STATUS.get(err.code, 422), detail={"code": err.code, "message": error_sentence(err)})


def _out(session: Session, notice: Notice, model: type[NoticeOut] = NoticeOut, **extra: Any) -> Any:
    values = {name: getattr(notice, name) for name in NoticeOut.model_fields if name != "deliveries"}
    return model(**values, deliveries=delivery_counts(session, [notice.id])[notice.id], **extra)


@router.post("", response_model=CreatedOut, status_code=201)
async def create(body: NoticeIn, account: Admin, services: ServicesDep, notices: NoticeServiceDep) -> CreatedOut:
    """Store the notice and queue its planning for the publish time (every targeted group, once)."""
    draft = NoticeDraft(
        title=body.title,
        body=body.body,
        author=_name(account.display_name or account.username),
        target=body.target.to_target(),
        publish_at=_local(body.publish_at),
        expires_at=_local(body.expires_at),
        link=body.link,
        image_url=body.image_url,
    )

    def store() -> tuple[int, datetime]:
        with unit_of_work(services.session_factory) as session:
            notice = create_notice(session, draft)
            return notice.id, notice.publish_at

    try:
        notice_id, publish_at = await asyncio.to_thread(store)
    except NoticeError as err:
        raise _refusal(err) from None
    queued = await notices.queue_plan(notice_id, publish_at)
    with unit_of_work(services.session_factory) as session:
        return _out(session, get_notice(session, notice_id), CreatedOut, queued=queued)


@router.get("", response_model=list[NoticeOut])
def list_notices(
    _account: AnyAccount,
    services: ServicesDep,
    status: Literal["scheduled", "sending", "done", "cancelled"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[NoticeOut]:
    query = select(Notice).order_by(Notice.id.desc()).limit(limit).offset(offset)
    if status is not None:
        query = query.where(Notice.status == status)
    with unit_of_work(services.session_factory) as session:
        found = list(session.scalars(query))
        counts = delivery_counts(session, [n.id for n in found])
        return [
            NoticeOut(
                **{name: getattr(n, name) for name in NoticeOut.model_fields if name != "deliveries"}, deliveries=counts[n.id]
            )
            for n in found
        ]


@router.get("/{notice_id}", response_model=NoticeDetail)
def detail(
    notice_id: int,
    _account: AnyAccount,
    services: ServicesDep,
    delivery_status: Annotated[
        Literal["pending", "sending", "sent", "failed", "cancelled", "expired"] | None,
        Query(description="Only groups in this delivery status."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> NoticeDetail:
    """The notice, its counts, and each group's delivery (status, attempts, last error)."""
    with unit_of_work(services.session_factory) as session:
        try:
            notice = get_notice(session, notice_id)
        except NoticeError as err:
            raise _refusal(err) from None
        query = (
            select(NoticeDelivery, ChatGroup.name)
            .join(ChatGroup, ChatGroup.id == NoticeDelivery.group_id)
            .where(NoticeDelivery.notice_id == notice_id)
            .order_by(NoticeDelivery.group_id)
            .limit(limit)
            .offset(offset)
        )
        if delivery_status is not None:
            query = query.where(NoticeDelivery.status == delivery_status)
        groups = [
            DeliveryOut(
                group_id=d.group_id,
                group_name=name,
                status=d.status,
                attempts=d.attempts,
                parts_sent=d.parts_sent,
                sent_at=d.sent_at,
                next_attempt_at=d.next_attempt_at,
                last_error=d.last_error,
            )
            for d, name in session.execute(query)
        ]
        return _out(session, notice, NoticeDetail, groups=groups)


@router.post("/{notice_id}/cancel", response_model=CancelledOut)
def cancel(notice_id: int, account: Admin, services: ServicesDep) -> CancelledOut:
    """Stop every group's delivery that has not gone out; 409 when the notice has already finished."""
    try:
        with unit_of_work(services.session_factory) as session:
            _, stopped = cancel_notice(session, notice_id, _name(account.display_name or account.username))
    except NoticeError as err:
        raise _refusal(err) from None
    with unit_of_work(services.session_factory) as session:
        return _out(session, get_notice(session, notice_id), CancelledOut, stopped=stopped)
