"""Who is speaking and where, from the metadata the router attaches to every Rasa turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rasa_sdk import Tracker

from bot.action_payloads import DeliverPayload, Delivery, MentionPayload
from bot.messages import OutgoingMessage, TargetType


@dataclass(frozen=True)
class Speaker:
    channel: str
    group_id: str | None
    sender_id: str
    sender_name: str
    # @-mentioned, a trigger prefix, a private chat or the reply the bot waited for. False: the router let an
    # unasked group message through on NLU's word alone, so an action that has nothing sure to say stays silent
    # rather than filing a ticket, pinging a worker or saying it found nothing (bot/router.py).
    addressed: bool = True
    # The message this one quotes (WeChat's 「…」 + dashed line), normalised; "" when none (bot/normalise.quoted_text).
    # The question is often only understandable with it: 这个要带医保卡吗 under a notice (knowledge/followups.py).
    quoted: str = ""
    # The grid of a person writing privately, when their channel knows it (an iLink binding made for a grid): a
    # report they make in private chat is filed there. None: a private report is asked to go to a group.
    grid_code: str | None = None

    @property
    def can_report(self) -> bool:
        """A report has a grid to go to: the group's, or the private speaker's own."""
        return bool(self.group_id or self.grid_code)


def speaker(tracker: Tracker) -> Speaker:
    """Metadata first; the conversation id (channel:group:sender) as a fallback for turns without it."""
    metadata: dict[str, Any] = (tracker.latest_message or {}).get("metadata") or {}
    channel, _, rest = tracker.sender_id.partition(":")
    group, _, sender = rest.partition(":")
    return Speaker(
        channel=metadata.get("channel") or channel,
        group_id=metadata.get("group_id") or (None if group in ("", "private") else group),
        sender_id=metadata.get("sender_id") or sender or tracker.sender_id,
        sender_name=metadata.get("sender_name") or sender or tracker.sender_id,
        addressed=metadata.get("addressed", True) is not False,
        quoted=str(metadata.get("quoted") or ""),
        grid_code=str(metadata.get("grid_code") or "") or None,
    )


def deliver(
    target_type: str,
    target_id: str,
    text: str,
    *,
    mention: tuple[str, str] | None = None,
    await_rating_from: str | None = None,
    channel: str | None = None,
) -> dict[str, Any]:
    """A message to somewhere other than the current conversation, as the custom payload the router sends on
    (bot/action_payloads.py, the contract both sides use).

    `channel`: where a private reporter is told (their ticket's channel); None: the group's or worker's own."""
    item = Delivery(
        target_type=TargetType(target_type),
        target_id=target_id,
        text=text,
        mentions=(MentionPayload(id=mention[0], name=mention[1]),) if mention else (),
        await_rating_from=await_rating_from or None,
        channel=channel or None,
    )
    return DeliverPayload(deliver=(item,)).as_custom()


def entity(tracker: Tracker, name: str) -> str | None:
    return next(tracker.get_latest_entity_values(name), None)


def deliver_message(message: OutgoingMessage) -> dict[str, Any]:
    """An OutgoingMessage built by a shared notice module, as the custom payload the router sends on."""
    return DeliverPayload(deliver=(Delivery.of(message),)).as_custom()
