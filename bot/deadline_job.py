"""Deadline job (督办, issue #5 item 6): reminds handlers before a deadline and escalates overdue tickets.

The database work (which tickets owe a notice, claimed exactly once) is `grid.deadlines`; this job only
runs it off the event loop, words each notice for its recipient (texts: bot/texts/zh.yml `deadlines.*`)
and sends the messages after the claims committed. A crash between commit and delivery loses that
round's chat messages but never doubles them; the `remind` / `overdue` history events still reach the
outbox, so external systems see every escalation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from bot.messages import OutgoingMessage, TargetType
from bot.runtime import Services
from bot.texts import colour_name, local_time
from bot.texts import text as t
from grid.deadlines import Audience, DeadlineNotice, NoticeKind, Recipient, due_notices
from storage.base import utcnow
from storage.engine import unit_of_work

log = logging.getLogger(__name__)


def duration_text(delta: timedelta) -> str:
    """A span as people say it: 40分钟, 3小时20分钟, 2天5小时 (whole minutes, at least one)."""
    minutes = max(int(delta.total_seconds() // 60), 1)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return t("deadlines.days_hours", days=days, hours=hours)
    if hours and minutes:
        return t("deadlines.hours_minutes", hours=hours, minutes=minutes)
    if hours:
        return t("deadlines.hours", hours=hours)
    return t("deadlines.minutes", minutes=minutes)


def _lead_name(notice: DeadlineNotice) -> str:
    lead = next((r for r in notice.recipients if r.audience is Audience.LEAD), None)
    return lead.name if lead else t("deadlines.no_lead")


def message_for(notice: DeadlineNotice, recipient: Recipient) -> OutgoingMessage:
    """The text one recipient gets: the handler is told to finish, the lead to dispatch or to chase."""
    common = {
        "number": notice.number,
        "colour_name": colour_name(notice.colour),
        "category": notice.category,
        "location": notice.location,
        "deadline": local_time(notice.deadline_at),
    }
    if notice.kind is NoticeKind.REMINDER:
        template = "deadlines.reminder" if recipient.audience is Audience.ASSIGNEE else "deadlines.reminder_unassigned"
        body = t(template, remaining=duration_text(notice.deadline_at - notice.noticed_at), **common)
    elif recipient.audience is Audience.LEAD:
        assignee_name = notice.assignee.name if notice.assignee else t("deadlines.no_assignee")
        body = t("deadlines.overdue_lead", overdue=_overdue(notice), assignee_name=assignee_name, **common)
    else:
        body = t("deadlines.overdue_worker", overdue=_overdue(notice), lead_name=_lead_name(notice), **common)
    return OutgoingMessage(TargetType.CONTACT, recipient.worker_id, body)


def _overdue(notice: DeadlineNotice) -> str:
    return duration_text(notice.noticed_at - notice.deadline_at)


def messages_for(notices: Iterable[DeadlineNotice]) -> list[OutgoingMessage]:
    return [message_for(notice, recipient) for notice in notices for recipient in notice.recipients]


def _claim_due(factory: sessionmaker[Session], now: datetime) -> list[DeadlineNotice]:
    """One transaction: the claims are committed before anything is sent."""
    with unit_of_work(factory) as session:
        return due_notices(session, now)


async def check_deadlines(services: Services) -> None:
    """One round of 督办: claim what is due now, then tell the workers and leads on their channels."""
    notices = await asyncio.to_thread(_claim_due, services.session_factory, utcnow())
    if not notices:
        return
    messages = messages_for(notices)
    await services.dispatcher.send(messages, origin=services.webchat.name)
    reminders = sum(1 for n in notices if n.kind is NoticeKind.REMINDER)
    log.info(
        "deadline check: %d reminders, %d overdue escalations, %d messages sent",
        reminders,
        len(notices) - reminders,
        len(messages),
    )
