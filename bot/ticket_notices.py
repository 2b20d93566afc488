"""Who hears about a ticket change, and what they are told — the same whether it came from chat or the API.

A resolved ticket asks its reporter to rate in the group (and tells co-reporters); a transferred or
re-dispatched one goes to its new worker; a returned one goes to the community lead; a merged one's reporters are
told which ticket now handles their problem. A reporter who reported in private chat (an iLink binding's grid) has
no group: they are told privately, on the channel they reported on (`to_reporter`). Texts: bot/texts/zh.yml.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.messages import Mention, OutgoingMessage, TargetType
from bot.texts import colour_name, local_time, status_name
from bot.texts import text as t
from grid.emergencies import EmergencyKind
from grid.geography import ChatGroup, Worker, community_lead
from grid.service import EMERGENCY_ACTION, Filing
from grid.tickets import Ticket, TicketReporter
from grid.workflow import Role


def new_ticket_text(ticket: Ticket, session: Session, template: str = "tickets.worker_new", **extra: object) -> str:
    """A ticket as its new handler reads it: number, colour, category, place, what was said, by whom, deadline."""
    group = session.get(ChatGroup, ticket.group_id) if ticket.group_id else None
    return t(
        template,
        number=ticket.number,
        colour_name=colour_name(ticket.colour),
        category=ticket.category,
        location=ticket.location,
        description=ticket.description,
        reporter_name=ticket.reporter_name,
        group_name=group.name if group else "",
        deadline=local_time(ticket.deadline_at),
        **extra,
    )


def filing_notices(session: Session, filing: Filing, template: str = "tickets.worker_new") -> list[OutgoingMessage]:
    """A new ticket goes privately to its worker, with a copy to the community lead when red or unstaffed.

    An emergency's notice opens with 【紧急工单】 and its kind, and says which number the resident was told to call,
    so the worker arriving knows whether the fire brigade or the lift company is already on its way. A new ticket
    that may repeat an open one says so (可能重复) with the command that merges them. A report that joined an open
    ticket tells nobody, unless it raised that ticket (`raised_notices`).
    """
    if filing.duplicate:
        return raised_notices(session, filing.ticket, filing.raised_by, filing.notify) if filing.raised_by else []
    if filing.emergency is not None:
        kind = filing.emergency.kind
        notice = new_ticket_text(
            filing.ticket, session, "tickets.worker_emergency", kind_name=kind.name, numbers=numbers_text(kind)
        )
    else:
        notice = new_ticket_text(filing.ticket, session, template)
    if filing.possible_duplicate is not None:
        notice = f"{notice}\n{possible_duplicate_text(filing.ticket, filing.possible_duplicate)}"
    assignee = filing.ticket.assignee_id
    messages = [OutgoingMessage(TargetType.CONTACT, assignee, notice)] if assignee else []
    lead_copy = t("tickets.lead_copy", notice=notice)
    messages.extend(OutgoingMessage(TargetType.CONTACT, person.id, lead_copy) for person in filing.notify)
    return messages


def possible_duplicate_text(ticket: Ticket, other: Ticket) -> str:
    """可能重复：GD…-0003（市政设施｜3号楼东侧｜处理中）and how to merge: what the worker checks before folding it in."""
    return t(
        "tickets.possible_duplicate",
        number=ticket.number,
        other=other.number,
        category=other.category,
        location=other.location,
        description=other.description,
        status_name=status_name(other.status),
    )


def raised_notices(session: Session, ticket: Ticket, later: str, leads: list[Worker]) -> list[OutgoingMessage]:
    """A ticket raised by a more urgent report of the same problem: its worker and the community lead are told to
    what (red, or an emergency and which) and why (what the later report said)."""
    emergency = next((e.note for e in reversed(ticket.events) if e.action == EMERGENCY_ACTION), None)
    level = t("tickets.raised_emergency", kind_name=emergency) if emergency else t("tickets.raised_red")
    notice = new_ticket_text(ticket, session, "tickets.worker_raised", level=level, later=later)
    messages = [OutgoingMessage(TargetType.CONTACT, ticket.assignee_id, notice)] if ticket.assignee_id else []
    lead_copy = t("tickets.lead_copy", notice=notice)
    messages.extend(OutgoingMessage(TargetType.CONTACT, lead.id, lead_copy) for lead in leads if lead.id != ticket.assignee_id)
    return messages


def numbers_text(kind: EmergencyKind) -> str:
    """96333、119: the numbers to call, in order."""
    return t("emergencies.numbers_join").join(kind.numbers)


def emergency_advice(kind: EmergencyKind) -> str:
    """What the resident does first (whom to call), the opening of the reply that files their emergency."""
    return t(f"emergencies.advice.{kind.code}")


def told_text(session: Session, filing: Filing) -> str:
    """Who was told of an emergency at once: 张敏（网格员）和李书记（社区负责人）, as the resident reads it."""
    worker = session.get(Worker, filing.ticket.assignee_id) if filing.ticket.assignee_id else None
    told = [t("emergencies.told_worker", name=worker.name)] if worker else []
    told += [t("emergencies.told_lead", name=lead.name) for lead in filing.notify]
    return t("emergencies.told_and").join(told) if told else t("emergencies.told_nobody")


def notices_for(session: Session, ticket: Ticket, action: str, actor_id: str, note: str = "") -> list[OutgoingMessage]:
    """The messages a change causes beyond the reply to whoever made it."""
    actor = session.get(Worker, actor_id)
    actor_name = actor.name if actor else actor_id
    if action == "resolve":
        return _resolved(ticket, ticket.result or note)
    if action == "merge":
        return _merged(session, ticket, actor_id)
    if action in ("transfer", "dispatch") and ticket.assignee_id and ticket.assignee_id != actor_id:
        if action == "transfer":
            text = new_ticket_text(ticket, session, "tickets.transferred_to_you", from_name=actor_name)
        else:
            text = new_ticket_text(ticket, session)
        return [OutgoingMessage(TargetType.CONTACT, ticket.assignee_id, text)]
    if action == "return":
        lead = community_lead(session, ticket.grid_code)
        if lead is None:
            return []
        text = new_ticket_text(ticket, session, "tickets.returned_to_lead", worker_name=actor_name, reason=note or "-")
        return [OutgoingMessage(TargetType.CONTACT, lead.id, text)]
    return []


def work_photo_count(ticket: Ticket) -> int:
    """Pictures the ticket's handlers took (the worker's before/after photos, a resolve's own): not the residents'."""
    return sum(len(e.photos or []) for e in ticket.events if e.actor_role != Role.RESIDENT)


def _merged(session: Session, ticket: Ticket, actor_id: str) -> list[OutgoingMessage]:
    """The merged ticket's reporters are told which ticket handles their problem now (and that they hear when it is
    resolved); when the merge raised that ticket, its worker and lead are told why, unless the worker merged it."""
    target = session.get(Ticket, ticket.merged_into_id) if ticket.merged_into_id else None
    if target is None:
        return []
    told = t("tickets.resident_merged", number=ticket.number, target=target.number, status_name=status_name(target.status))
    reporters: list[Ticket | TicketReporter] = [ticket, *ticket.co_reporters]
    messages = [m for m in (to_reporter(r, told) for r in reporters) if m is not None]
    events = target.events
    joined = max((i for i, e in enumerate(events) if e.action == "merge_in" and e.note == ticket.number), default=0)
    if joined and events[joined - 1].action == "triage" and events[joined - 1].actor_role == Role.SYSTEM:
        lead = community_lead(session, target.grid_code)
        raised = raised_notices(session, target, ticket.description, [lead] if lead else [])
        messages += [m for m in raised if m.target_id != actor_id]
    return messages


def _resolved(ticket: Ticket, result: str) -> list[OutgoingMessage]:
    """The reporter is asked to rate (their rating decides closure), told of the worker's photos; co-reporters too."""
    photos = work_photo_count(ticket)
    if photos:
        ask = t("tickets.resident_resolved_photos", number=ticket.number, result=result, count=photos)
    else:
        ask = t("tickets.resident_resolved", number=ticket.number, result=result)
    asked = to_reporter(ticket, ask, awaits_rating=True)
    messages = [asked] if asked is not None else []
    told = t("tickets.co_reporter_resolved", number=ticket.number, result=result)
    messages += [m for m in (to_reporter(co, told) for co in ticket.co_reporters) if m is not None]
    return messages


def to_reporter(reporter: Ticket | TicketReporter, text: str, awaits_rating: bool = False) -> OutgoingMessage | None:
    """A reporter is told in their group with an @; a private reporter privately, on the channel they reported on
    (their next message there is the rating, when it asks for one). None: nowhere to tell them (a hotline report)."""
    awaits = reporter.reporter_id if awaits_rating else None
    if reporter.group_id:
        mention = (Mention(reporter.reporter_id, reporter.reporter_name),)
        return OutgoingMessage(TargetType.ROOM, reporter.group_id, text, mention, awaits_rating_from=awaits)
    if reporter.reporter_channel:
        return OutgoingMessage(
            TargetType.CONTACT, reporter.reporter_id, text, awaits_rating_from=awaits, channel=reporter.reporter_channel
        )
    return None
