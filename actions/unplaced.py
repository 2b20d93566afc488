"""An addressed message NLU could not place: the knowledge base, then a person — never a brush-off.

Residents did not read the training data. A long complaint written like a letter to the city, or a policy
question in words nobody trained on, lands on chitchat, out_of_scope or nlu_fallback, and the canned "我是网格助手…"
or "抱歉，我没太明白" told someone who asked for help that nobody would. Here such a message gets, in order:
- small talk (short, and the open-set gate does not take it for a grid matter: rasa_components/grid_gate.py) →
  a friendly word (no self-introduction: that is for greetings, thanks and 你是谁), or for a short request of
  something else (out_of_scope) what the bot can do;
- the knowledge base's answer, when it is confident (asked directly it ranks the right entry first far more often
  than the intent model routes questions to it);
- a person: a 咨询 ticket for the grid's worker carrying the whole message, and the resident told who answers.
Unaddressed messages never get here with nothing awaited (the router stays silent), and an action run for an
unaddressed message with nothing sure to say stays silent too.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.context import Speaker, speaker
from actions.format import run_messages
from actions.policy import Events, Messages, answer_offer_or_hand_off, hand_off_question, knowledge_answer
from actions.runtime import in_transaction
from bot.texts import text as t

# Small talk: at most this many characters and a gate score below SMALL_TALK_GATE. Real requests that NLU misses
# are long (residents' messages to a city: 60–250 characters) or read as grid matters to the gate. The bar is where
# a person beats a brush-off: `python -m bench.nlu_real --calibrate-small-talk` (short lines NLU could not place,
# outside every reported sample): at 0.3, 94 % of residents' short titles reach a person and 31 % of Weibo chatter
# @-ed to the bot does (at 0.5: 80 % and 13 %).
SMALL_TALK_CHARS = 20
SMALL_TALK_GATE = 0.3
# The reply small talk keeps, by the intent NLU gave it: chitchat a friendly word (policy.small_talk, not the
# self-introduction), a short request for something else what the bot can do instead.
OTHER_REPLY = {"out_of_scope": "utter_out_of_scope", "nlu_fallback": "utter_default"}


def too_long_for_small_talk(text: str) -> bool:
    """Longer than small talk, a rating or "我报的事呢": a message that says something, for a person to read."""
    return len(text.strip()) > SMALL_TALK_CHARS


def is_small_talk(latest_message: dict[str, Any]) -> bool:
    score = (latest_message.get("grid_matter") or {}).get("score")
    return not too_long_for_small_talk(latest_message.get("text") or "") and (score is None or float(score) < SMALL_TALK_GATE)


def nothing_open(session: Session, who: Speaker, said: str) -> tuple[Messages, Events]:
    """An addressed resident asked after (or urged) a ticket and has none open here.

    The words may be a policy question NLU took for a status check (我是二级残疾有护理补贴吗): a confident
    knowledge-base answer is the better reply. A long message is a request NLU could not place (the knowledge base,
    an offer, else a person). A short one may really ask after a report made elsewhere (by phone, to 12345) or be a
    short title NLU misread (请加快严查…): either way a person looks it up — "您目前没有进行中的工单" told them nobody
    would. No "您想问的是" offer for a short one: 我报的事怎么样了 has no entry, and the nearest (办公时间) are noise."""
    if too_long_for_small_talk(said):
        return answer_offer_or_hand_off(session, who, said, "policy.handoff_unplaced")
    answered = knowledge_answer(session, who, said)
    return answered or hand_off_question(session, who, said, "tickets.status_none_handoff"), []


class ActionUnplaced(Action):
    def name(self) -> str:
        return "action_unplaced"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        # Also Rasa's core fallback (config.yml: no rule fits, e.g. `inform` outside a form). There no rule says what
        # comes next, so RulePolicy would fall back again — up to Rasa's 10 predictions, each filing a 咨询 ticket.
        # Rasa's own fallback ends the turn by reverting the message; this one listens, keeping what it did.
        return [*await place(dispatcher, tracker), FollowupAction("action_listen")]


async def place(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[dict[str, Any]]:
    """What action_unplaced does, for other actions that find their intent did not fit the words."""
    latest = tracker.latest_message or {}
    who = speaker(tracker)
    if is_small_talk(latest):
        intent = (latest.get("intent") or {}).get("name") or "nlu_fallback"
        if not who.addressed:
            return []
        if intent in OTHER_REPLY:
            dispatcher.utter_message(response=OTHER_REPLY[intent])
        else:
            dispatcher.utter_message(text=t("policy.small_talk"))
        return []
    question = latest.get("text") or ""
    messages, events = await in_transaction(
        lambda session: answer_offer_or_hand_off(session, who, question, "policy.handoff_unplaced")
    )
    run_messages(dispatcher, messages)
    return events


class ActionGreet(Action):
    """A greeting gets the self-introduction; a request that merely opens with one (您好，我想反映一下…, 你好 请问…),
    which NLU reads as a greeting, is placed like any message it could not place — not introduced to."""

    def name(self) -> str:
        return "action_greet"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        if is_small_talk(tracker.latest_message or {}):
            dispatcher.utter_message(response="utter_greet")
            return []
        return await place(dispatcher, tracker)
