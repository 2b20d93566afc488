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
from actions.social import bare_kind
from bot.texts import local_time
from bot.texts import text as t
from bot.ticket_notices import filing_notices
from grid.clock import LOCAL_TZ
from grid.geography import ChatGroup, Grid, Worker, asker_regions
from grid.notices import Notice
from grid.service import TicketService
from knowledge import followups
from knowledge.base import Answer
from knowledge.questions import AskedQuestion, last_answer_to
from storage.base import utcnow

CONSULT_CATEGORY = "咨询"
Messages = list[dict[str, Any]]
Events = list[dict[str, Any]]


class ActionAnswerPolicy(Action):
    def name(self) -> str:
        return "action_answer_policy"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        who = speaker(tracker)
        question = (tracker.latest_message or {}).get("text") or ""
        messages, events = await in_transaction(lambda session: answer_offer_or_hand_off(session, who, question))
        run_messages(dispatcher, messages)
        return events


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
    other actions weigh when NLU's intent fits the words badly (a policy question taken for a status check).

    The question is read in its context (knowledge/followups.py): the message it quotes, else what was just answered
    to this asker — a follow-up (那要带什么材料) is answered from that entry's relevant sentences, never from another
    entry, and a question about a quoted notice from the notice."""
    today: date = utcnow().astimezone(LOCAL_TZ).date()
    kb, regions = services().knowledge, asker_regions(session, who.group_id)
    window = services().followup_window
    context = followups.context_for(session, kb, who.sender_id, who.group_id, who.quoted, regions, today, window)
    reading = followups.read(session, kb, question, regions, today, context, addressed=who.addressed)
    if reading is None:
        return None
    if reading.notice is not None:
        session.add(_asked_notice(who, question, reading.notice))
        return _answered_from_notice(reading.notice, reading.excerpt or reading.notice.body)
    assert reading.answer is not None
    session.add(_asked(who, question, reading.answer))
    return _answered(reading.answer) if reading.excerpt is None else _answered_in_part(reading.answer, reading.excerpt)


def _answered_in_part(found: Answer, excerpt: str) -> Messages:
    """A follow-up's answer: the sentences of the entry that answer it, naming the entry and its source."""
    entry = found.entry
    answer = t("policy.followup_answer", title=entry.title, excerpt=excerpt, citation=entry.citation())
    return [{"text": answer}, {"json_message": {"expect": "feedback"}}]


def _asked_notice(who: Speaker, question: str, notice: Notice) -> AskedQuestion:
    """Recorded like a knowledge answer, the notice in place of an entry: a follow-up or "没用" then refers to it."""
    return AskedQuestion(
        group_id=who.group_id,
        asker_id=who.sender_id,
        asker_name=who.sender_name,
        question=question,
        answered=True,
        entry_external_id=f"{followups.NOTICE_ANSWER_PREFIX}{notice.id}",
    )


def _answered_from_notice(notice: Notice, excerpt: str) -> Messages:
    answer = t("policy.notice_answer", excerpt=excerpt, title=notice.title, published=local_time(notice.publish_at))
    return [{"text": answer}, {"json_message": {"expect": "feedback"}}]


def answer_offer_or_hand_off(
    session: Session, who: Speaker, question: str, template: str = "policy.handoff_resident"
) -> tuple[Messages, Events]:
    """The knowledge base's confident answer with its source; else, addressed, the plausible entries offered as
    "您想问的是…" (actions/suggestions.py; the events are the slots remembering the offer, for the caller to return
    to Rasa); else the question to the grid worker (`template` tells the resident so). Unaddressed and unanswerable:
    nothing at all, and never an offer nobody asked for."""
    answered = knowledge_answer(session, who, question)
    if answered is not None:
        return answered, []
    if not who.addressed:
        return [], []  # unasked and unanswerable: no 咨询 ticket on a guess (a recipe is not the worker's question)
    from actions.suggestions import offer  # here: actions/suggestions.py builds on this module

    offered = offer(session, who, question)
    if offered is not None:
        return offered
    return hand_off_question(session, who, question, template), []


def hand_off_question(session: Session, who: Speaker, question: str, template: str) -> Messages:
    """The question, recorded as unanswered, to the grid worker as a 咨询 ticket (`template` tells the resident)."""
    asked = _asked(who, question, None)
    session.add(asked)
    return hand_off(session, who, asked, question, template)


class ActionAnswerUnhelpful(Action):
    def name(self) -> str:
        return "action_answer_unhelpful"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        who = speaker(tracker)
        latest = tracker.latest_message or {}
        messages, events = await in_transaction(lambda session: self._unhelpful(session, who, latest))
        run_messages(dispatcher, messages)
        return events

    def _unhelpful(self, session: Session, who: Speaker, latest: dict[str, Any]) -> tuple[Messages, Events]:
        """With nothing answered before, the words were no complaint about an answer. Only a bare one — nothing but
        没用 / 不对 / 答非所问 (actions/social.py reads the words), or words naming nothing the knowledge base does not
        answer — asks what it refers to. Anything with words of its own is a question NLU misread (@我想问问补贴的事, a
        policy question in words nobody trained on): the knowledge base's answer, else the entries its words name
        offered, else a person — as any question."""
        asked = last_answer_to(session, who.sender_id, who.group_id)
        if asked is None:
            if not who.addressed:
                return [], []  # nothing to refer to and nobody asked: nothing sure to say
            said = latest.get("text") or ""
            if bare_kind(said) is not None:
                return [{"text": t("policy.unhelpful_nothing")}], []
            answered = knowledge_answer(session, who, said)
            if answered is not None:
                return answered, []
            about = followups.own_words(said)
            if not about:
                return [{"text": t("policy.unhelpful_nothing")}], []  # 就这个？ names nothing to ask a person about
            from actions.suggestions import offer  # here: actions/suggestions.py builds on this module

            offered = offer(session, who, said, about=about)
            return offered or (hand_off_question(session, who, said, "policy.handoff_resident"), [])
        asked.feedback, asked.feedback_at = "unhelpful", utcnow()
        description = t("policy.unhelpful_description", question=asked.question, entry=asked.entry_external_id or "")
        return hand_off(session, who, asked, description, "policy.unhelpful_ack"), []


def hand_off(session: Session, who: Speaker, asked: AskedQuestion, description: str, template: str) -> Messages:
    """File a 咨询 ticket for the worker of the asker's grid: the group's, or a private asker's own (an iLink binding
    made for a grid), who then hears the answer privately. A private asker with no grid: only the question recorded.

    A question quoting a message (这个要带医保卡吗 under a notice) carries the quote: the worker must see what it asks about."""
    group = session.get(ChatGroup, who.group_id) if who.group_id else None
    grid = session.get(Grid, who.grid_code) if group is None and who.grid_code else None
    if group is None and grid is None:
        return [{"text": t("policy.handoff_resident_no_worker")}]
    if who.quoted and who.quoted not in description:
        description = t("policy.handoff_quoted", question=description, quoted=who.quoted)
    filing = TicketService(session).file_report(
        group_id=group.id if group else None,
        grid_code=grid.code if grid else None,
        reporter_channel=who.channel if grid else None,
        reporter_id=who.sender_id,
        reporter_name=who.sender_name,
        description=description,
        location=group.name if group else grid.name,
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
