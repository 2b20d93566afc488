"""An addressed message NLU could not place: the knowledge base, then a person — never a brush-off.

Residents did not read the training data. A long complaint written like a letter to the city, or a policy
question in words nobody trained on, lands on chitchat, out_of_scope or nlu_fallback, and the canned "我是网格助手…"
or "抱歉，我没太明白" told someone who asked for help that nobody would. Here such a message gets, in order:
- a message that only greets, thanks, says goodbye, asks who the bot is or acknowledges (its words, not NLU's intent
  or the gate's score, decide: actions/social.py) → its one-line reply (the self-introduction only for a greeting
  and 你是谁); any message with words of its own — a short title NLU put on chitchat, a recipe @-ed to the bot — is
  never told what the bot can do instead (#22: no brush-off when addressed) and goes on:
- the knowledge base's answer, when it is confident (asked directly it ranks the right entry first far more often
  than the intent model routes questions to it);
- the plausible entries offered (您想问的是…), when there are some;
- a person: a 咨询 ticket for the grid's worker carrying the whole message, and the resident told who answers.
Unaddressed messages never get here with nothing awaited (the router stays silent), and an action run for an
unaddressed message with nothing sure to say stays silent too.
"""

from __future__ import annotations

from typing import Any, Literal

from rasa_sdk import Action, Tracker
from rasa_sdk.events import FollowupAction
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.orm import Session

from actions.context import Speaker, speaker
from actions.format import run_messages
from actions.policy import Events, Messages, answer_offer_or_hand_off, hand_off_question, knowledge_answer
from actions.runtime import in_transaction
from actions.social import Kind, bare_kind
from bot.texts import text as t

# Small talk for an UNADDRESSED message (where the bot stays silent on it): at most this many characters and a gate
# score below SMALL_TALK_GATE. Real requests that NLU misses are long (residents' messages to a city: 60–250
# characters) or read as grid matters to the gate. Addressed messages are judged by their words (actions/social.py):
# the bar let 6 of 450 addressed real lines (short, gate < 0.3) get a friendly word instead of a person.
SMALL_TALK_CHARS = 20
SMALL_TALK_GATE = 0.3
# The one-line reply of a social message, by its kind: a response of domain.yml, or a text key (policy.small_talk: a
# friendly word, not the self-introduction). A bare 没用 with nothing to refer to is asked what it means.
# NLU's social intents and their one-line replies (domain.yml), for a social line the words list does not cover.
INTENT_REPLY = {
    "greet": "utter_greet",
    "thanks": "utter_you_are_welcome",
    "goodbye": "utter_goodbye",
    "bot_challenge": "utter_iamabot",
}
SOCIAL_REPLY: dict[Kind, tuple[Literal["response", "text"], str]] = {
    "identity": ("response", "utter_iamabot"),
    "greeting": ("response", "utter_greet"),
    "thanks": ("response", "utter_you_are_welcome"),
    "farewell": ("response", "utter_goodbye"),
    "acknowledgement": ("text", "policy.small_talk"),
    "unhelpful": ("text", "policy.unhelpful_nothing"),
}


def too_long_for_small_talk(text: str) -> bool:
    """Longer than small talk, a rating or "我报的事呢": a message that says something, for a person to read."""
    return len(text.strip()) > SMALL_TALK_CHARS


def is_small_talk(latest_message: dict[str, Any]) -> bool:
    """Unaddressed chatter an action stays silent on (short, and no grid matter to the open-set gate)."""
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
    question = latest.get("text") or ""
    if not who.addressed and is_small_talk(latest):
        return []
    if who.addressed and social_reply(dispatcher, question):
        return []
    messages, events = await in_transaction(
        lambda session: answer_offer_or_hand_off(session, who, question, "policy.handoff_unplaced")
    )
    run_messages(dispatcher, messages)
    return events


class ActionSocial(Action):
    """Greetings, thanks, goodbyes and 你是谁 (NLU's greet, thanks, goodbye, bot_challenge): the one-line reply only
    when the words are nothing else; a request that merely opens or closes with one (您好，我想反映一下…, 你好 东门的路灯,
    谢谢 请问低保怎么办), or a real line NLU put on one of these intents, is placed like any message it could not
    place — never answered with a friendly word. Whether it is only social is read from its words (actions/social.py),
    however short it is."""

    def name(self) -> str:
        return "action_social"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[dict[str, Any]]:
        latest = tracker.latest_message or {}
        said = latest.get("text") or ""
        if social_reply(dispatcher, said):
            return []
        if not speaker(tracker).addressed and is_small_talk(latest):
            # Awaited and unaddressed (said while a form waits), in words the forms list lacks: the intent's own line,
            # as the rules gave it before — an unasked short chat line is no question for a person.
            response = INTENT_REPLY.get(str((latest.get("intent") or {}).get("name")))
            if response:
                dispatcher.utter_message(response=response)
            return []
        return await place(dispatcher, tracker)


def social_reply(dispatcher: CollectingDispatcher, said: str) -> bool:
    """The one-line reply of a message that only greets, thanks, says goodbye, asks who the bot is or acknowledges
    (or only says 没用); False, with nothing said, for a message with words of its own."""
    kind = bare_kind(said)
    if kind is None:
        return False
    how, name = SOCIAL_REPLY[kind]
    if how == "response":
        dispatcher.utter_message(response=name)
    else:
        dispatcher.utter_message(text=t(name))
    return True
