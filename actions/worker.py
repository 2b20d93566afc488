"""The grid worker's private commands besides 办结: 接单, 我的工单, 帮助."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.context import Speaker, entity, speaker
from actions.format import colour_name, error_text, local_time, run_messages
from actions.runtime import in_transaction
from bot.texts import text as t
from grid.geography import Worker
from grid.service import TicketService
from grid.workflow import TicketError
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
            ticket = TicketService(session).accept(number, who.sender_id)
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
        tickets = TicketService(session).assigned_to(who.sender_id)
        if not tickets:
            return [{"text": t("tickets.worker_list_none")}]
        now = utcnow()
        lines = [
            t(
                "tickets.worker_list_line",
                number=x.number,
                colour_name=colour_name(x.colour),
                category=x.category,
                location=x.location,
                deadline=local_time(x.deadline_at),
                overdue=t("tickets.worker_list_overdue") if x.deadline_at < now else "",
            )
            for x in tickets[:20]
        ]
        return [{"text": "\n".join([t("tickets.worker_list_header", count=len(tickets)), *lines])}]


class ActionWorkerHelp(Action):
    """帮助 in private chat: the commands for a worker, what the bot does for anyone else."""

    def name(self) -> str:
        return "action_worker_help"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        is_worker = await in_transaction(lambda s: s.get(Worker, who.sender_id) is not None)
        dispatcher.utter_message(text=t("help.worker" if is_worker else "help.resident"))
        return []
