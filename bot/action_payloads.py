"""The custom payload custom actions hand the router through Rasa: messages to deliver elsewhere.

An action (actions/) may need a message sent somewhere other than the conversation it answers: a worker told of a
new ticket, a reporter asked for a rating. Rasa carries such a message as a custom response
(`{"custom": {"deliver": [...]}}`) from the action server to the router (bot/router.py), which sends it on. Both
sides use the model here, the actions to build the payload and the router to read it, so a field renamed on one side
cannot silently drop a message on the other: a payload that does not fit is refused with `InvalidActionPayload`,
naming the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.messages import Mention, OutgoingMessage, TargetType

DELIVER_KEY = "deliver"  # the key of the custom payload that carries deliveries


class InvalidActionPayload(ValueError):
    """An action's custom payload that does not fit the contract (a bug in an action, or actions and router out of
    step): the message says which field."""


class MentionPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str


class Delivery(BaseModel):
    """One message to a room or a person, as an action asks for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_type: TargetType
    target_id: str
    text: str
    mentions: tuple[MentionPayload, ...] = ()
    # The person (in target_id's room, or privately) asked for a rating: their next reply is listened for.
    await_rating_from: str | None = None
    # Where a private reporter is told (their ticket's channel); None: the group's or worker's own channel.
    channel: str | None = None

    @classmethod
    def of(cls, message: OutgoingMessage) -> Delivery:
        return cls(
            target_type=message.target_type,
            target_id=message.target_id,
            text=message.text,
            mentions=tuple(MentionPayload(id=m.id, name=m.name) for m in message.mentions),
            await_rating_from=message.awaits_rating_from or None,
            channel=message.channel or None,
        )

    def outgoing(self) -> OutgoingMessage:
        return OutgoingMessage(
            target_type=self.target_type,
            target_id=self.target_id,
            text=self.text,
            mentions=tuple(Mention(m.id, m.name) for m in self.mentions),
            awaits_rating_from=self.await_rating_from,
            channel=self.channel or None,
        )


class DeliverPayload(BaseModel):
    """The custom payload of an action's message that carries deliveries: `{"deliver": [...]}`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    deliver: tuple[Delivery, ...]

    def as_custom(self) -> dict[str, Any]:
        """The JSON an action puts in `json_message`; fields at their defaults are left out, as before the model."""
        return self.model_dump(mode="json", exclude_defaults=True)


def deliveries(custom: dict[str, Any]) -> list[OutgoingMessage]:
    """The messages a custom response asks the router to send (none when it has no deliveries)."""
    if custom.get(DELIVER_KEY) is None:
        return []
    try:
        payload = DeliverPayload.model_validate({DELIVER_KEY: custom[DELIVER_KEY]})
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}" for problem in error.errors())
        raise InvalidActionPayload(f"an action's deliver payload does not fit bot/action_payloads.py: {problems}") from None
    return [item.outgoing() for item in payload.deliver]
