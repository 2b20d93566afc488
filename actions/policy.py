"""ask_policy: answer from the knowledge base with its source, or hand the question to the grid worker."""

from __future__ import annotations

from datetime import date
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.orm import Session

from actions.context import Speaker, deliver, speaker
from actions.format import run_messages
from actions.runtime import in_transaction, services
from bot.texts import text as t
from grid.clock import LOCAL_TZ
from grid.geography import ChatGroup, asker_regions, on_duty_worker
from storage.base import utcnow


class ActionAnswerPolicy(Action):
    def name(self) -> str:
        return "action_answer_policy"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[dict[str, Any]]:
        who = speaker(tracker)
        question = (tracker.latest_message or {}).get("text") or ""
        messages = await in_transaction(lambda session: self._answer(session, who, question))
        run_messages(dispatcher, messages)
        return []

    def _answer(self, session: Session, who: Speaker, question: str) -> list[dict[str, Any]]:
        group = session.get(ChatGroup, who.group_id) if who.group_id else None
        today: date = utcnow().astimezone(LOCAL_TZ).date()
        found = services().knowledge.answer(session, question, asker_regions(session, who.group_id), today)
        if found is not None:
            return [{"text": t("policy.answer", answer=found.entry.answer, citation=found.entry.citation())}]
        worker = on_duty_worker(session, group.grid_code) if group else None
        if worker is None:
            return [{"text": t("policy.handoff_resident_no_worker")}]
        notice = t(
            "policy.handoff_worker", group_name=group.name if group else "", reporter_name=who.sender_name, question=question
        )
        return [
            {"text": t("policy.handoff_resident", worker_name=worker.name)},
            {"json_message": deliver("contact", worker.id, notice)},
        ]
