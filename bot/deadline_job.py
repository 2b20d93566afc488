"""Deadline job (督办, docs/tickets.md): reminds handlers before a deadline and escalates overdue tickets.

The database work (which tickets owe a notice, claimed exactly once) is `grid.deadlines`; this job only
runs it off the event loop, words each notice for its recipient (texts: bot/texts/zh.yml `deadlines.*`)
and sends the messages after the claims committed. A crash between commit and delivery loses that
round's chat messages but never doubles them; the `remind` / `overdue` history events still reach the
outbox, so external systems see every escalation.

The emergency round (`check_emergencies`) works the same way on a shorter beat: a life-safety ticket nobody has
accepted is told again to its worker and the community lead every EMERGENCY_RENOTICE_MINUTES until someone does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from bot.messages import OutgoingMessage, TargetType
from bot.texts import colour_name, local_time
from bot.texts import text as t
from grid.deadlines import (
    Audience,
    DeadlineNotice,
    EmergencyRenotice,
    NoticeKind,
    Recipient,
    due_emergency_renotices,
    due_notices,
)
from storage.base import utcnow
from storage.engine import unit_of_work

if TYPE_CHECKING:  # bot/worker_day.py uses duration_text, and bot/runtime.py builds what imports it
    from bot.runtime import Services

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


# --- emergencies nobody has accepted (life-safety emergencies, grid/emergencies.py) -------------------------------


def renotice_message(renotice: EmergencyRenotice, recipient: Recipient) -> OutgoingMessage:
    """The worker is asked to accept now; the lead is told who has not, to call them or dispatch someone else."""
    common = {
        "number": renotice.number,
        "kind_name": renotice.kind_name,
        "location": renotice.location,
        "description": renotice.description,
        "elapsed": duration_text(renotice.noticed_at - renotice.created_at),
    }
    if recipient.audience is Audience.ASSIGNEE:
        body = t("emergencies.renotice_assignee", **common)
    else:
        assignee_name = renotice.assignee.name if renotice.assignee else t("emergencies.no_assignee")
        body = t("emergencies.renotice_lead", assignee_name=assignee_name, **common)
    return OutgoingMessage(TargetType.CONTACT, recipient.worker_id, body)


def _claim_renotices(factory: sessionmaker[Session], now: datetime, every: timedelta) -> list[EmergencyRenotice]:
    with unit_of_work(factory) as session:
        return due_emergency_renotices(session, now, every)


async def check_emergencies(services: Services) -> None:
    """One round: every emergency still not accepted a whole interval after its last notice is told again, to its
    worker and the community lead; claims commit before anything is sent, as in the 督办 round."""
    every = timedelta(minutes=services.settings.emergency_renotice_minutes)
    renotices = await asyncio.to_thread(_claim_renotices, services.session_factory, utcnow(), every)
    if not renotices:
        return
    messages = [renotice_message(r, recipient) for r in renotices for recipient in r.recipients]
    await services.dispatcher.send(messages, origin=services.webchat.name)
    log.warning("emergency re-notice: %d emergencies still not accepted, %d messages sent", len(renotices), len(messages))
