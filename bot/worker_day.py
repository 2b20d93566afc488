"""A worker's day: the morning digest of their tickets, the community lead's briefing, and the job that sends them.

Asked any time in private chat (`今天的工单`, `还有几个没办` → the digest, through the worker_list action; `简报`,
`昨天怎么样` → the briefing, answered by bot/worker_desk.py), and pushed each morning at MORNING_DIGEST_AT (local)
to every worker who turned it on (`开启早报`; workers.morning_digest): a worker gets their digest, a lead the
briefing of their community with their own tickets after it. The numbers are grid/briefing.py's.

Once a day, even with several app processes: the round claims the day with one UPDATE of workers.digest_sent_on
that only changes rows not yet claimed today (RETURNING the ids it changed), so of two processes checking at the
same moment only the one whose UPDATE changed a row words and sends that worker's digest — the same claim-then-send
as the deadline notices (grid/deadlines.py): a crash after the claim loses that morning's message, never doubles it.
A process started late still sends the day's digest, up to MORNING_LATEST after the set time; not in the afternoon.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.deadline_job import duration_text
from bot.messages import OutgoingMessage, TargetType
from bot.settings import Settings
from bot.texts import colour_name, day_name, local_time, status_name
from bot.texts import text as t
from grid.briefing import Agenda, agenda_of, day_figures, grids_seen_by, local_day, overdue_in, red_open_in, yesterday
from grid.clock import LOCAL_TZ
from grid.geography import Grid, Region, Worker
from grid.tickets import Ticket
from storage.engine import unit_of_work

# How late after the set time a morning digest still goes out (a process started at 09:30 sends the 08:00 one).
MORNING_LATEST = timedelta(hours=4)
# Lines per section: a chat message, not a report; the console has the full lists.
MAX_LINES = 10


def morning_time(settings: Settings) -> time | None:
    """MORNING_DIGEST_AT as a time; None when empty (no morning digests). Parsed when settings load, so a malformed
    value has already stopped start-up (bot/setting_formats.clock_time)."""
    return settings.morning_digest_at


# --- wording ----------------------------------------------------------------------------------------------------


def day_text(day: date) -> str:
    """12月07日 周一."""
    return f"{day_name(day)} {t('worker_day.weekdays').split()[day.weekday()]}"


def _line(ticket: Ticket, now: datetime) -> str:
    return t(
        "tickets.worker_list_line",
        number=ticket.number,
        colour_name=colour_name(ticket.colour),
        category=ticket.category,
        location=ticket.location,
        deadline=local_time(ticket.deadline_at),
        overdue=t("tickets.worker_list_overdue") if ticket.deadline_at < now else "",
    )


def _section(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    shown = [title, *lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append(t("worker_day.more", count=len(lines) - MAX_LINES))
    return shown


def agenda_text(agenda: Agenda, now: datetime) -> str:
    """The worker's open tickets: how many, how many overdue and due today, then each group in working order."""
    if not agenda.count:
        return t("tickets.worker_list_none")
    return "\n".join(
        [
            t("worker_day.digest_header", count=agenda.count, overdue=len(agenda.overdue), due_today=len(agenda.due_today)),
            *_section(t("worker_day.overdue"), [_line(x, now) for x in agenda.overdue]),
            *_section(t("worker_day.due_today"), [_line(x, now) for x in agenda.due_today]),
            *_section(t("worker_day.later"), [_line(x, now) for x in agenda.later]),
        ]
    )


def digest_text(session: Session, worker_id: str, now: datetime) -> str:
    """What `我的工单` / `今天的工单` answer, and the body of a worker's morning digest."""
    return agenda_text(agenda_of(session, worker_id, now), now)


def _rate(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else t("worker_day.no_rate")


def _scope_name(session: Session, worker: Worker) -> str:
    """社区 name for a lead, 网格 name for a worker: whose numbers the briefing gives."""
    grid = session.get(Grid, worker.grid_code)
    if grid is None:
        return worker.grid_code
    if worker.role == "lead":
        community = session.get(Region, grid.community_code)
        return community.name if community else grid.community_code
    return grid.name


def briefing_text(session: Session, worker: Worker, now: datetime) -> str:
    """Yesterday's numbers, what is overdue now and the red tickets still open, of a lead's community (a worker's
    grid): what a lead reads first in the morning, and what `简报` / `昨天怎么样` answer."""
    grids = grids_seen_by(session, worker)
    day = yesterday(now)
    figures = day_figures(session, day, grids)
    names = {row.id: row.name for row in session.execute(select(Worker.id, Worker.name).where(Worker.grid_code.in_(grids)))}

    def assignee(ticket: Ticket) -> str:
        if not ticket.assignee_id:
            return t("worker_day.no_assignee")
        return names.get(ticket.assignee_id) or ticket.assignee_id

    overdue = overdue_in(session, grids, now)
    red = red_open_in(session, grids)
    overdue_lines = [
        t(
            "worker_day.overdue_line",
            number=x.number,
            category=x.category,
            location=x.location,
            assignee_name=assignee(x),
            overdue=duration_text(now - x.deadline_at),
        )
        for x in overdue
    ]
    red_lines = [
        t(
            "worker_day.red_line",
            number=x.number,
            category=x.category,
            location=x.location,
            status_name=status_name(x.status),
            assignee_name=assignee(x),
        )
        for x in red
    ]
    return "\n".join(
        [
            t("worker_day.briefing_header", scope=_scope_name(session, worker), date=day_text(local_day(now))),
            t(
                "worker_day.figures",
                day=day_name(day),
                new=figures.new,
                resolved=figures.resolved,
                on_time_rate=_rate(figures.on_time_rate),
                satisfaction_rate=_rate(figures.satisfaction_rate),
                rated=figures.rated,
            ),
            *(_section(t("worker_day.overdue_header", count=len(overdue)), overdue_lines) or [t("worker_day.overdue_none")]),
            *(_section(t("worker_day.red_header", count=len(red)), red_lines) or [t("worker_day.red_none")]),
        ]
    )


def morning_text(session: Session, worker: Worker, now: datetime) -> str:
    """A worker's morning message: their digest; a lead's: the briefing, then their own tickets if they hold any."""
    if worker.role != "lead":
        return "\n".join([t("worker_day.morning_header", date=day_text(local_day(now))), digest_text(session, worker.id, now)])
    briefing = briefing_text(session, worker, now)
    agenda = agenda_of(session, worker.id, now)
    if not agenda.count:
        return briefing
    return "\n\n".join([briefing, "\n".join([t("worker_day.own_header"), agenda_text(agenda, now)])])


# --- turning it on and off -------------------------------------------------------------------------------------


def set_morning_digest(session: Session, worker_id: str, on: bool, now: datetime, at: time | None) -> str:
    """Turn the worker's morning digest on or off; the reply. Turned on after today's time, it starts tomorrow (the
    day is marked sent): a "morning" digest in the afternoon would only repeat what they just asked for."""
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise LookupError(worker_id)
    if on and at is None:
        return t("worker_day.morning_disabled")
    worker.morning_digest = on
    if not on:
        return t("worker_day.morning_off")
    assert at is not None
    local = now.astimezone(LOCAL_TZ)
    if local.time() >= at and (worker.digest_sent_on or "") < local.date().isoformat():
        worker.digest_sent_on = local.date().isoformat()
    return t("worker_day.morning_on_lead" if worker.role == "lead" else "worker_day.morning_on", at=at.strftime("%H:%M"))


# --- the morning round --------------------------------------------------------------------------------------------


def claim_morning(session: Session, now: datetime, at: time, latest: timedelta = MORNING_LATEST) -> list[str]:
    """The ids of the workers whose digest is due at `now` and this transaction claimed (see the module docstring).

    One UPDATE … RETURNING, the transaction's first statement: on PostgreSQL the second of two concurrent rounds
    waits on the row locks and then finds the rows already claimed; on SQLite its write waits for the first to
    commit and reads the rows afresh. The caller commits before sending.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(LOCAL_TZ)
    start = datetime.combine(local.date(), at, LOCAL_TZ)
    if not start <= local < start + latest:
        return []
    day = local.date().isoformat()
    claim = (
        update(Worker)
        .where(Worker.morning_digest.is_(True), or_(Worker.digest_sent_on.is_(None), Worker.digest_sent_on < day))
        .values(digest_sent_on=day)
        .returning(Worker.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(claim))


def morning_messages(factory: sessionmaker[Session], now: datetime, at: time) -> list[OutgoingMessage]:
    """Claim the due digests and word them, in one transaction committed before anything is sent."""
    with unit_of_work(factory) as session:
        messages = []
        for worker_id in claim_morning(session, now, at):
            worker = session.get(Worker, worker_id)
            if worker is not None:
                messages.append(OutgoingMessage(TargetType.CONTACT, worker.id, morning_text(session, worker, now)))
        return messages
