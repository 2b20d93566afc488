"""Messages that are only a picture, a voice note or a file: what the bot does with them, on every channel.

Residents report a problem in words and then, as WeChat users do, send a photo of it as a message of its own.
A picture that comes shortly (PHOTO_WINDOW) after the resident filed a ticket in the same group (or, in a
private chat, anywhere) is attached to that ticket's history as a `photo` entry and confirmed in one line;
a picture with no recent ticket of theirs is ordinary group life and gets silence (in a private chat, a hint).
The bot cannot understand voice notes, videos or files: when one is addressed to it (a private chat, an
@-mention) it asks politely for text; in a group it otherwise says nothing. A grid worker's private picture or voice
note is not a resident's: the intake hands it to bot/worker_evidence.py first (evidence for their ticket).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.messages import IncomingMessage, MediaKind, Mention, OutgoingMessage, TargetType
from bot.texts import text as t
from grid.tickets import Ticket, TicketReporter
from grid.workflow import OPEN_STATUSES, Role
from storage.base import utcnow
from storage.engine import unit_of_work

log = logging.getLogger(__name__)

PHOTO_WINDOW = timedelta(minutes=30)
# How many pictures one ticket keeps from residents; more is noise for the worker and the console.
MAX_RESIDENT_PHOTOS = 9


async def handle_media(
    factory: sessionmaker[Session], message: IncomingMessage, window: timedelta = PHOTO_WINDOW
) -> list[OutgoingMessage] | None:
    """What to say to a message that is only media; None when it has text (the router handles it then)."""
    if not message.media or message.text.strip():
        return None
    pictures = [m.url for m in message.media if m.kind is MediaKind.IMAGE and m.url]
    if pictures:
        number = await asyncio.to_thread(attach_to_recent_ticket, factory, message, pictures, window)
        if number is not None:
            return [_reply(message, t("photos.attached", number=number))]
        return [_reply(message, t("photos.no_ticket"))] if message.is_private else []
    if message.is_private or message.mentions_bot:
        return [_reply(message, t("photos.please_type"))]
    return []


def attach_to_recent_ticket(
    factory: sessionmaker[Session], message: IncomingMessage, urls: Sequence[str], window: timedelta
) -> str | None:
    """Add the pictures to the open ticket this person reported here most recently, within `window`; its number."""
    with unit_of_work(factory) as session:
        ticket = _recent_ticket(session, message.sender_id, message.group_id, utcnow() - window)
        if ticket is None:
            return None
        kept = sum(len(e.photos or []) for e in ticket.events if e.actor_role == Role.RESIDENT)
        room = max(MAX_RESIDENT_PHOTOS - kept, 0)
        if room == 0:
            log.info("ticket %s already has %d resident photos; picture not attached", ticket.number, kept)
            return ticket.number
        event = ticket.record("photo", message.sender_id, Role.RESIDENT)
        event.photos = list(urls)[:room]
        return ticket.number


def _recent_ticket(session: Session, reporter_id: str, group_id: str | None, since: datetime) -> Ticket | None:
    """The open ticket this person filed, or joined as a co-reporter, most recently since `since` (in this group)."""
    filed = select(Ticket.id, Ticket.created_at).where(
        Ticket.reporter_id == reporter_id, Ticket.created_at >= since, Ticket.status_in(OPEN_STATUSES)
    )
    joined = (
        select(Ticket.id, TicketReporter.created_at)
        .join(TicketReporter, TicketReporter.ticket_id == Ticket.id)
        .where(TicketReporter.reporter_id == reporter_id, TicketReporter.created_at >= since, Ticket.status_in(OPEN_STATUSES))
    )
    if group_id is not None:
        filed = filed.where(Ticket.group_id == group_id)
        joined = joined.where(TicketReporter.group_id == group_id)
    candidates = list(session.execute(filed)) + list(session.execute(joined))
    if not candidates:
        return None
    ticket_id = max(candidates, key=lambda row: row[1])[0]
    return session.get(Ticket, ticket_id)


def _reply(message: IncomingMessage, body: str) -> OutgoingMessage:
    if message.is_private:
        return OutgoingMessage(TargetType.CONTACT, message.sender_id, body, channel=message.channel)
    assert message.group_id is not None
    mention = (Mention(message.sender_id, message.sender_name),)
    return OutgoingMessage(TargetType.ROOM, message.group_id, body, mention, channel=message.channel)
