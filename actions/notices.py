"""ask_notices (最近有什么补贴/通知): the notices currently valid for the asker's group."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import speaker
from actions.format import run_messages
from actions.policy import knowledge_answer
from actions.runtime import in_transaction
from actions.unplaced import place, too_long_for_small_talk
from bot.notices.render import current_notices_text
from grid.notices import Notice, current_notices


class ActionCurrentNotices(Action):
    """Published, not expired, not cancelled, and aimed at this group (its grid, community, street, tags)."""

    def name(self) -> str:
        return "action_current_notices"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        said = (tracker.latest_message or {}).get("text") or ""
        found, answer = await in_transaction(lambda session: _answer(current_notices(session, who.group_id)))
        if not found and too_long_for_small_talk(said):
            # "No notices" answers 最近有什么通知, not a long question NLU took for one (对于保障城市基本运行的重点商超…):
            # that is placed like any message NLU could not place.
            return await place(dispatcher, tracker)
        if not found:
            # A short policy question read as asking after notices (最近有什么补贴) is better answered by the knowledge
            # base, when it is sure, than told there are no notices.
            answered = await in_transaction(lambda session: knowledge_answer(session, who, said))
            if answered:
                run_messages(dispatcher, answered)
                return []
        dispatcher.utter_message(text=answer)
        return []


def _answer(notices: list[Notice]) -> tuple[bool, str]:
    return bool(notices), current_notices_text(notices)
