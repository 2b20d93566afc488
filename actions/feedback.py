"""The resident's 催办, complaints about the service and asking for a person: each goes to a person, never
into a void."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.context import Speaker, deliver, entity, speaker
from actions.format import run_messages
from actions.policy import Events
from actions.runtime import in_transaction
from actions.unplaced import nothing_open
from bot.texts import error_text, local_time
from bot.texts import text as t
from grid.geography import ChatGroup, Worker, community_lead, on_duty_worker
from grid.service import TicketService
from grid.workflow import TicketError

Messages = list[dict[str, Any]]


class ActionUrgeTicket(Action):
    def name(self) -> str:
        return "action_urge_ticket"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        number = entity(tracker, "ticket_number")
        said = (tracker.latest_message or {}).get("text") or ""
        messages, events = await in_transaction(lambda s: self._urge(s, who, number, said))
        run_messages(dispatcher, messages)
        return events

    def _urge(self, session: Session, who: Speaker, number: str | None, said: str) -> tuple[Messages, Events]:
        """催办 of the resident's open ticket; with none open (请加快严查… is a title NLU read as urging), what
        actions/unplaced.nothing_open does for any question after a ticket the resident does not have."""
        try:
            ticket = TicketService(session).urge(reporter_id=who.sender_id, number=number)
        except TicketError as err:
            if err.code == "nothing_to_urge" and who.addressed:
                return nothing_open(session, who, said)
            return ([{"text": error_text(err.code, err.params)}] if who.addressed else []), []
        worker = session.get(Worker, ticket.assignee_id) if ticket.assignee_id else None
        deadline = local_time(ticket.deadline_at)
        messages: Messages = [
            {
                "text": t(
                    "tickets.urged_resident", number=ticket.number, worker_name=worker.name if worker else "", deadline=deadline
                )
            }
        ]
        if worker is not None:
            notice = t(
                "tickets.urged_worker",
                number=ticket.number,
                reporter_name=ticket.reporter_name,
                category=ticket.category,
                location=ticket.location,
                deadline=deadline,
            )
            messages.append({"json_message": deliver("contact", worker.id, notice)})
        return messages, []


class ActionComplain(Action):
    def name(self) -> str:
        return "action_complain"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        said = (tracker.latest_message or {}).get("text") or ""
        run_messages(dispatcher, await in_transaction(lambda s: self._forward(s, who, said)))
        return []

    def _forward(self, session: Session, who: Speaker, said: str) -> Messages:
        group = session.get(ChatGroup, who.group_id) if who.group_id else None
        lead = community_lead(session, group.grid_code) if group else None
        if lead is None:
            return [{"text": t("complaints.resident_no_lead")}]
        notice = t("complaints.lead", group_name=group.name if group else "", reporter_name=who.sender_name, text=said)
        return [
            {"text": t("complaints.resident", lead_name=lead.name)},
            {"json_message": deliver("contact", lead.id, notice)},
        ]


class ActionAskHuman(Action):
    """找网格员: the grid's worker on duty (else the community lead) hears who asks, where, and what they said."""

    def name(self) -> str:
        return "action_ask_human"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        said = (tracker.latest_message or {}).get("text") or ""
        run_messages(dispatcher, await in_transaction(lambda s: self._call(s, who, said)))
        return []

    def _call(self, session: Session, who: Speaker, said: str) -> Messages:
        group = session.get(ChatGroup, who.group_id) if who.group_id else None
        if group is None:
            return [{"text": t("ask_human.no_group")}]
        person = on_duty_worker(session, group.grid_code) or community_lead(session, group.grid_code)
        if person is None:
            return [{"text": t("ask_human.nobody")}]
        notice = t("ask_human.worker", group_name=group.name, reporter_name=who.sender_name, text=said)
        return [
            {"text": t("ask_human.resident", worker_name=person.name)},
            {"json_message": deliver("contact", person.id, notice)},
        ]
