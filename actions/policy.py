"""ask_policy: answer from the knowledge base with its source, or hand the question to the grid worker.

A handed-off question becomes a 咨询 ticket for the grid's worker, so it has a deadline and the
resident hears the worker's answer when the ticket is resolved, like any report. A resident who says a
knowledge-base answer did not help (answer_unhelpful) gets the same hand-off, and admins see both kinds
of question in the unanswered list.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from actions.context import Speaker, deliver_message, speaker
from actions.format import run_messages
from actions.runtime import in_transaction, services
from bot.texts import text as t
from bot.ticket_notices import filing_notices
from grid.clock import LOCAL_TZ
from grid.geography import ChatGroup, Worker, asker_regions
from grid.service import TicketService
from knowledge.base import Answer
from knowledge.questions import AskedQuestion, last_answer_to
from storage.base import utcnow

CONSULT_CATEGORY = "咨询"
Messages = list[dict[str, Any]]


class ActionAnswerPolicy(Action):
    def name(self) -> str:
        return "action_answer_policy"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        who = speaker(tracker)
        question = (tracker.latest_message or {}).get("text") or ""
        run_messages(dispatcher, await in_transaction(lambda session: answer_or_hand_off(session, who, question)))
        return []


def _asked(who: Speaker, question: str, found: Answer | None) -> AskedQuestion:
    return AskedQuestion(
        group_id=who.group_id,
        asker_id=who.sender_id,
        asker_name=who.sender_name,
        question=question,
        answered=found is not None,
        entry_id=found.entry.id if found else None,
        entry_external_id=found.entry.external_id if found else None,
        score=round(found.score, 4) if found else None,
    )


def _answered(found: Answer) -> Messages:
    answer = t("policy.answer", answer=found.entry.answer, citation=found.entry.citation())
    # The router listens for this resident's "没用" for a while after an answer.
    return [{"text": answer}, {"json_message": {"expect": "feedback"}}]


def knowledge_answer(session: Session, who: Speaker, question: str) -> Messages | None:
    """The knowledge base's confident answer with its source (recorded as asked and answered), or None: the evidence
    other actions weigh when NLU's intent fits the words badly (a policy question taken for a status check)."""
    today: date = utcnow().astimezone(LOCAL_TZ).date()
    found = services().knowledge.answer(session, question, asker_regions(session, who.group_id), today)
    if found is None:
        return None
    session.add(_asked(who, question, found))
    return _answered(found)


def answer_or_hand_off(session: Session, who: Speaker, question: str, template: str = "policy.handoff_resident") -> Messages:
    """The knowledge base's confident answer with its source, else the question to the grid worker (`template`
    tells the resident so); unaddressed and unanswerable: nothing at all."""
    answered = knowledge_answer(session, who, question)
    if answered is not None:
        return answered
    if not who.addressed:
        return []  # unasked and unanswerable: no 咨询 ticket on a guess (a recipe is not the worker's question)
    asked = _asked(who, question, None)
    session.add(asked)
    return hand_off(session, who, asked, question, template)


class ActionAnswerUnhelpful(Action):
    def name(self) -> str:
        return "action_answer_unhelpful"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        who = speaker(tracker)
        run_messages(dispatcher, await in_transaction(lambda session: self._unhelpful(session, who)))
        return []

    def _unhelpful(self, session: Session, who: Speaker) -> Messages:
        asked = last_answer_to(session, who.sender_id, who.group_id)
        if asked is None:
            return [{"text": t("policy.unhelpful_nothing")}]
        asked.feedback, asked.feedback_at = "unhelpful", utcnow()
        description = t("policy.unhelpful_description", question=asked.question, entry=asked.entry_external_id or "")
        return hand_off(session, who, asked, description, "policy.unhelpful_ack")


def hand_off(session: Session, who: Speaker, asked: AskedQuestion, description: str, template: str) -> Messages:
    """File a 咨询 ticket for the group's worker; without a group (a private asker) only record the question."""
    group = session.get(ChatGroup, who.group_id) if who.group_id else None
    if group is None:
        return [{"text": t("policy.handoff_resident_no_worker")}]
    filing = TicketService(session).file_report(
        group_id=group.id,
        reporter_id=who.sender_id,
        reporter_name=who.sender_name,
        description=description,
        location=group.name,
        category=CONSULT_CATEGORY,
        duplicate_window=timedelta(0),  # two residents' questions are two questions
    )
    asked.ticket_number = filing.ticket.number
    worker = session.get(Worker, filing.ticket.assignee_id) if filing.ticket.assignee_id else None
    reply = (
        t(template, worker_name=worker.name, number=filing.ticket.number) if worker else t("policy.handoff_resident_no_worker")
    )
    notices = filing_notices(session, filing, "tickets.worker_consult")
    return [{"text": reply}, *({"json_message": deliver_message(notice)} for notice in notices)]
