"""Who hears about a ticket change, and what they are told — the same whether it came from chat or the API.

A resolved ticket asks its reporter to rate in the group (and tells co-reporters); a transferred or
re-dispatched one goes to its new worker; a returned one goes to the community lead. Texts: bot/texts/zh.yml.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.messages import Mention, OutgoingMessage, TargetType
from bot.texts import colour_name, local_time
from bot.texts import text as t
from grid.emergencies import EmergencyKind
from grid.geography import ChatGroup, Worker, community_lead
from grid.service import Filing
from grid.tickets import Ticket


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
    so the worker arriving knows whether the fire brigade or the lift company is already on its way.
    """
    if filing.emergency is not None:
        kind = filing.emergency.kind
        notice = new_ticket_text(
            filing.ticket, session, "tickets.worker_emergency", kind_name=kind.name, numbers=numbers_text(kind)
        )
    else:
        notice = new_ticket_text(filing.ticket, session, template)
    assignee = filing.ticket.assignee_id
    messages = [OutgoingMessage(TargetType.CONTACT, assignee, notice)] if assignee else []
    lead_copy = t("tickets.lead_copy", notice=notice)
    messages.extend(OutgoingMessage(TargetType.CONTACT, person.id, lead_copy) for person in filing.notify)
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


def _resolved(ticket: Ticket, result: str) -> list[OutgoingMessage]:
    """The reporter is asked to rate (their rating decides closure); co-reporters are told too."""
    messages: list[OutgoingMessage] = []
    if ticket.group_id:
        ask = t("tickets.resident_resolved", number=ticket.number, result=result)
        mention = Mention(ticket.reporter_id, ticket.reporter_name)
        messages.append(OutgoingMessage(TargetType.ROOM, ticket.group_id, ask, (mention,), awaits_rating_from=ticket.reporter_id))
    for co in ticket.co_reporters:
        if co.group_id:
            told = t("tickets.co_reporter_resolved", number=ticket.number, result=result)
            messages.append(OutgoingMessage(TargetType.ROOM, co.group_id, told, (Mention(co.reporter_id, co.reporter_name),)))
    return messages
