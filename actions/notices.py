"""ask_notices (最近有什么补贴/通知): the notices currently valid for the asker's group."""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.context import speaker
from actions.runtime import in_transaction
from bot.notices.render import current_notices_text
from grid.notices import current_notices


class ActionCurrentNotices(Action):
    """Published, not expired, not cancelled, and aimed at this group (its grid, community, street, tags)."""

    def name(self) -> str:
        return "action_current_notices"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        who = speaker(tracker)
        answer = await in_transaction(lambda session: current_notices_text(current_notices(session, who.group_id)))
        dispatcher.utter_message(text=answer)
        return []
