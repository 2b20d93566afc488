"""Channel health and outgoing-queue figures for the console: is each platform connected, is anything stuck."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.api.deps import ServicesDep
from bot.auth.deps import AnyAccount
from bot.channels.outbound import OutboundMessage, OutboundStatus
from storage.engine import unit_of_work

router = APIRouter(prefix="/api/v1/channels", tags=["channels"])


class ChannelOut(BaseModel):
    name: str
    account: str
    status: str
    detail: str
    since: datetime
    max_text_chars: int
    can_mention: bool
    pending: int
    failed: int


def _queue_counts(factory: sessionmaker[Session]) -> dict[tuple[str, str], int]:
    with unit_of_work(factory) as session:
        query = (
            select(OutboundMessage.channel, OutboundMessage.status, func.count())
            .where(OutboundMessage.status.in_([OutboundStatus.PENDING, OutboundStatus.FAILED]))
            .group_by(OutboundMessage.channel, OutboundMessage.status)
        )
        return {(channel, status): count for channel, status, count in session.execute(query)}


@router.get("", response_model=list[ChannelOut])
async def channel_health(services: ServicesDep, _: AnyAccount) -> list[ChannelOut]:
    """Each running channel's connection state, with how many messages wait to be sent and how many failed."""
    counts = await asyncio.to_thread(_queue_counts, services.session_factory)
    out = []
    for channel in services.channels:
        health = channel.health()
        out.append(
            ChannelOut(
                name=channel.name,
                account=health.account or channel.account,
                status=health.status.value,
                detail=health.detail,
                since=health.since,
                max_text_chars=channel.capabilities.max_text_chars,
                can_mention=channel.capabilities.can_mention,
                pending=counts.get((channel.name, OutboundStatus.PENDING), 0),
                failed=counts.get((channel.name, OutboundStatus.FAILED), 0),
            )
        )
    return out
