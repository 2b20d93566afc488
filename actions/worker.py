"""The grid worker's private commands besides 办结: 接单, 我的工单, 帮助."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.context import Speaker, deliver_message, entity, speaker
from actions.format import run_messages
from actions.runtime import in_transaction
from bot.texts import action_name, colour_name, error_text, local_time, status_name
from bot.texts import text as t
from bot.ticket_notices import notices_for
from bot.worker_day import digest_text
from grid.geography import community_lead
from grid.service import Actor, TicketService
from grid.tickets import Ticket
from grid.workflow import Role, TicketError
from storage.base import utcnow

Messages = list[dict[str, Any]]


class ActionWorkerAccept(Action):
    def name(self) -> str:
        return "action_worker_accept"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        number = entity(tracker, "ticket_number")
        if not number:
            dispatcher.utter_message(text=t("errors.accept_usage"))
            return []
        run_messages(dispatcher, await in_transaction(lambda s: self._accept(s, who, number)))
        return []

    def _accept(self, session: Session, who: Speaker, number: str) -> Messages:
        try:
            service = TicketService(session)
            ticket = service.accept(number, service.actor_for(who.sender_id, who.channel))
        except TicketError as err:
            return [{"text": error_text(err.code, err.params)}]
        return [{"text": t("tickets.worker_accepted", number=ticket.number)}]


class ActionWorkerList(Action):
    def name(self) -> str:
        return "action_worker_list"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        run_messages(dispatcher, await in_transaction(lambda s: self._list(s, who)))
        return []

    def _list(self, session: Session, who: Speaker) -> Messages:
        """我的工单, 今天的工单, 还有几个没办: the worker's digest (bot/worker_day.py), the morning one's body."""
        actor = TicketService(session).actor_for(who.sender_id, who.channel)  # a worker's id typed elsewhere lists nothing
        if actor.role not in (Role.WORKER, Role.LEAD):
            return [{"text": t("tickets.worker_list_none")}]
        return [{"text": digest_text(session, actor.id, utcnow())}]


class ActionWorkerHelp(Action):
    """帮助 in private chat: the commands for a worker, what the bot does for anyone else."""

    def name(self) -> str:
        return "action_worker_help"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        actor = await in_transaction(lambda s: TicketService(s).actor_for(who.sender_id, who.channel))
        is_worker = actor.role in (Role.WORKER, Role.LEAD)
        # A worker's own words the router could not read (bot/worker_words.py) arrive as command_text: say so first,
        # so the commands read as "this is what I understand", not as an answer to what they said.
        said = (entity(tracker, "command_text") or "").strip()
        help_text = t("help.worker" if is_worker else "help.resident")
        if is_worker and said:
            help_text = f"{t('help.worker_not_understood', said=said)}\n{help_text}"
        dispatcher.utter_message(text=help_text)
        return []


def _split_target(text: str) -> tuple[str, str]:
    """'李强 不在我片区' → ('李强', '不在我片区'): the first word names who, the rest is the reason."""
    target, _, reason = text.strip().partition(" ")
    return target, reason.strip()


class _WorkerCommand(Action, ABC):
    """A worker's ticket command from private chat: act, confirm, and tell whoever the change concerns.

    Abstract, so rasa_sdk's executor registers only the concrete commands below.
    """

    action = ""
    usage_key = ""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        number = entity(tracker, "ticket_number")
        if not number:
            dispatcher.utter_message(text=t(self.usage_key))
            return []
        text = (entity(tracker, "command_text") or "").strip()
        run_messages(dispatcher, await in_transaction(lambda s: self._handle(s, who, number, text)))
        return []

    def _handle(self, session: Session, who: Speaker, number: str, text: str) -> Messages:
        service = TicketService(session)
        try:
            reply, ticket, note = self.act(service, service.actor_for(who.sender_id, who.channel), number, text)
        except TicketError as err:
            return [{"text": error_text(err.code, err.params)}]
        notices = notices_for(session, ticket, self.action, who.sender_id, note)
        return [{"text": reply}, *({"json_message": deliver_message(m)} for m in notices)]

    @abstractmethod
    def act(self, service: TicketService, actor: Actor, number: str, text: str) -> tuple[str, Ticket, str]:
        """Do the change; return the confirmation for the worker, the ticket, and the note others are told."""


class ActionWorkerTransfer(_WorkerCommand):
    action, usage_key = "transfer", "errors.transfer_usage"

    def name(self) -> str:
        return "action_worker_transfer"

    def act(self, service: TicketService, actor: Actor, number: str, text: str) -> tuple[str, Ticket, str]:
        target, reason = _split_target(text)
        if not target:
            raise TicketError("unknown_worker", worker="")
        ticket = service.transfer(number, actor, target, reason)
        worker = service.worker(ticket.assignee_id or "")
        name = worker.name if worker else target
        return t("tickets.worker_transferred", number=ticket.number, worker_name=name), ticket, reason


class ActionWorkerEscalate(_WorkerCommand):
    action, usage_key = "escalate", "errors.escalate_usage"

    def name(self) -> str:
        return "action_worker_escalate"

    def act(self, service: TicketService, actor: Actor, number: str, text: str) -> tuple[str, Ticket, str]:
        target, reason = _split_target(text)
        if not target:
            raise TicketError("unknown_department", department="")
        ticket = service.escalate(number, actor, target, reason)
        department = service.find_department(ticket.department_code or "")
        name = department.name if department else target
        return t("tickets.worker_escalated", number=ticket.number, department_name=name), ticket, reason


class ActionWorkerReturn(_WorkerCommand):
    action, usage_key = "return", "errors.return_usage"

    def name(self) -> str:
        return "action_worker_return"

    def act(self, service: TicketService, actor: Actor, number: str, text: str) -> tuple[str, Ticket, str]:
        ticket = service.return_ticket(number, actor, text)
        lead = community_lead(service.session, ticket.grid_code)
        if lead is None:
            return t("tickets.worker_returned_no_lead", number=ticket.number), ticket, text
        return t("tickets.worker_returned", number=ticket.number, lead_name=lead.name), ticket, text


class ActionWorkerQuery(_WorkerCommand):
    """查询: the ticket and its history, for workers; residents see their own tickets through status questions."""

    action, usage_key = "query", "errors.query_usage"

    def name(self) -> str:
        return "action_worker_query"

    def act(self, service: TicketService, actor: Actor, number: str, text: str) -> tuple[str, Ticket, str]:
        ticket = service.get(number)
        if actor.role is Role.RESIDENT and ticket.reporter_id != actor.id:
            raise TicketError("not_reporter", number=ticket.number)
        head = t(
            "tickets.detail",
            number=ticket.number,
            colour_name=colour_name(ticket.colour),
            status_name=status_name(ticket.status),
            category=ticket.category,
            location=ticket.location,
            description=ticket.description,
            reporter_name=ticket.reporter_name,
            deadline=local_time(ticket.deadline_at),
        )
        lines = [
            t(
                "tickets.detail_event",
                time=local_time(e.created_at),
                action_name=action_name(e.action),
                note=f"：{e.note}" if e.note else "",
            )
            for e in ticket.events[-10:]
        ]
        return "\n".join([head, *lines]), ticket, ""


def _note(note: str | None) -> str:
    return f"：{note}" if note else ""
