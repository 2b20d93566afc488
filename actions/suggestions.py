"""“您想问的是…”: plausible knowledge-base entries offered by number when none is confident enough to answer.

An addressed question the knowledge base cannot answer outright used to go straight to the grid worker, even when
the right entry ranked first and only the answer bar (calibrated to keep wrong answers rare) stood in the way.
Now the plausible entries (knowledge/answer_policy.AnswerPolicy.plausible, floor calibrated) are listed, and the
resident's pick is the confirmation the bar was waiting for: a pick is answered from that entry with its source and
counted as answered; "都不是" (0) sends the question to a person as before.

The offer is remembered in the slots `suggested_entries` (entry ids, in the order shown) and `suggested_question`,
and a custom `{"expect": "choice"}` makes the router read the resident's next message as a pick (bot/choices.py),
which it sends as `/pick_suggestion{"choice": n}`; rules run `action_pick_suggestion`.
"""

from __future__ import annotations

from datetime import date

from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.context import Speaker, entity, speaker
from actions.format import run_messages
from actions.policy import Events, Messages, _answered, _asked, hand_off
from actions.runtime import in_transaction, services
from bot.texts import text as t
from grid.clock import LOCAL_TZ
from grid.geography import asker_regions
from knowledge.base import Answer
from knowledge.models import KnowledgeEntry
from storage.base import utcnow

ENTRIES_SLOT = "suggested_entries"
QUESTION_SLOT = "suggested_question"
EXPECT_CHOICE = {"expect": "choice"}
# Marks the one repeat of the question after a number that was not offered: a second such number goes to a person.
ASKED_AGAIN = {"expect": "choice", "again": True}


def offer(session: Session, who: Speaker, question: str, about: list[str] | None = None) -> tuple[Messages, Events] | None:
    """The numbered plausible entries and the slots that remember them, or None when nothing is plausible.

    `about`: words one of which an entry's title must name to be offered — for words that may be no question at all
    (a bare 没用 finds every entry middling-near), so that only an offer about what they name is made."""
    today: date = utcnow().astimezone(LOCAL_TZ).date()
    found = services().knowledge.suggestions(session, question, asker_regions(session, who.group_id), today)
    if about is not None:
        found = [s for s in found if any(word in s.entry.title for word in about)]
    if not found:
        return None
    options = "\n".join(t("suggestions.option", number=n, title=s.entry.title) for n, s in enumerate(found, start=1))
    messages: Messages = [{"text": t("suggestions.offer", options=options)}, {"json_message": EXPECT_CHOICE}]
    return messages, [SlotSet(ENTRIES_SLOT, [s.entry.id for s in found]), SlotSet(QUESTION_SLOT, question)]


def forget() -> Events:
    return [SlotSet(ENTRIES_SLOT, None), SlotSet(QUESTION_SLOT, None)]


def offered_entries(tracker: Tracker) -> list[int]:
    """The offered entry ids; anything else in the slot (a hand-edited tracker) is dropped rather than trusted."""
    value = tracker.get_slot(ENTRIES_SLOT) or []
    return [int(v) for v in value if str(v).isdigit()] if isinstance(value, list) else []


def picked(tracker: Tracker) -> int | None:
    """The `choice` entity the router sent (an int in the intent trigger's JSON, a string if typed by hand)."""
    value = entity(tracker, "choice")
    try:
        return int(str(value).strip()) if value is not None else None
    except ValueError:
        return None


def asked_again(tracker: Tracker) -> bool:
    """Whether the bot's turn just before this pick was the repeat of the question (ASKED_AGAIN)."""
    users = 0
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            users += 1
            if users == 2:
                return False
        elif users == 1 and event.get("event") == "bot":
            custom = (event.get("data") or {}).get("custom") or {}
            if custom.get("again"):
                return True
    return False


class ActionPickSuggestion(Action):
    def name(self) -> str:
        return "action_pick_suggestion"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> Events:
        who = speaker(tracker)
        entries, question = offered_entries(tracker), tracker.get_slot(QUESTION_SLOT) or ""
        choice = picked(tracker)
        if not entries or not question:  # nothing offered (the slots were cleared, or the tracker is new)
            dispatcher.utter_message(text=t("suggestions.nothing_offered"))
            return forget()
        if choice is not None and 1 <= choice <= len(entries):
            entry_id = entries[choice - 1]
            run_messages(dispatcher, await in_transaction(lambda s: answer_pick(s, who, question, entry_id)))
            return forget()
        if choice is not None and choice != 0 and not asked_again(tracker):
            dispatcher.utter_message(text=t("suggestions.again", count=len(entries)))
            dispatcher.utter_message(json_message=ASKED_AGAIN)
            return []  # the offer stands: the slots keep it
        run_messages(dispatcher, await in_transaction(lambda s: to_a_person(s, who, question)))
        return forget()


def answer_pick(session: Session, who: Speaker, question: str, entry_id: int) -> Messages:
    """The picked entry's answer with its source, recorded as the question answered by that entry; an entry deleted
    since the offer leaves the question to a person."""
    entry = session.get(KnowledgeEntry, entry_id)
    if entry is None:
        return to_a_person(session, who, question)
    asked = _asked(who, question, None)
    asked.answered, asked.entry_id, asked.entry_external_id = True, entry.id, entry.external_id
    session.add(asked)
    return _answered(Answer(entry, score=0.0, runner_up=0.0))  # only the entry is shown: the same answer as unasked


def to_a_person(session: Session, who: Speaker, question: str) -> Messages:
    """None of the offered entries: the original question goes to the grid worker as a 咨询 ticket."""
    asked = _asked(who, question, None)
    session.add(asked)
    return hand_off(session, who, asked, question, "suggestions.handoff")
