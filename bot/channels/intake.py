"""Where every adapter hands over a message: the steps that are the same whatever the platform.

Drop a redelivery (same platform message id), drop the bot's own messages, keep quiet in groups nobody has
mapped to a grid (or say so once when @-mentioned there), then route the message and send what the bot says.
Adapters stay thin: they convert and call `receive`; the web chat API does the same.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from bot.channels.dedup import Deduplicator
from bot.channels.dispatch import Dispatcher
from bot.messages import IncomingMessage, Mention, OutgoingMessage, TargetType
from bot.metrics import MESSAGES_IN
from bot.photos import handle_media
from bot.router import MessageRouter
from bot.texts import text as t
from grid.geography import ChatGroup
from storage.engine import unit_of_work

log = logging.getLogger(__name__)


class MessageIntake:
    def __init__(
        self,
        router: MessageRouter,
        dispatcher: Dispatcher,
        dedup: Deduplicator,
        factory: sessionmaker[Session],
        own_accounts: Callable[[str], str | None],
    ) -> None:
        self._router = router
        self._dispatcher = dispatcher
        self._dedup = dedup
        self._factory = factory
        self._own_account = own_accounts
        self._unmapped_logged: set[str] = set()

    async def receive(self, message: IncomingMessage, *, group_checked: bool = False) -> list[OutgoingMessage]:
        """`group_checked`: the caller has just seen the group mapped (the web chat API, writing its transcript)."""
        if message.sender_id == self._own_account(message.channel):
            return []  # the bot's own message echoed back by the platform
        if not await self._dedup.first_time(message.channel, message.message_id):
            log.info("redelivered message %s on %s ignored", message.message_id, message.channel)
            MESSAGES_IN.labels(message.channel, "duplicate").inc()
            return []
        try:
            group_to_check = None if group_checked else message.group_id
            if group_to_check is not None and not await asyncio.to_thread(self._is_mapped, group_to_check):
                outgoing = self._unmapped(message)
                MESSAGES_IN.labels(message.channel, "unmapped_group").inc()
            else:
                # A bare picture or voice note: a worker's evidence for their ticket, else a resident's (bot/photos.py).
                media_reply = await self._router.worker_media(message)
                if media_reply is None:
                    media_reply = await handle_media(self._factory, message)
                if media_reply is not None:
                    MESSAGES_IN.labels(message.channel, "media").inc()  # the router counts the rest by outcome
                outgoing = media_reply if media_reply is not None else await self._router.handle(message)
            return await self._dispatcher.send(outgoing, origin=message.channel)
        except BaseException:
            # Not handled (the database went away mid-turn): the platform's redelivery, or the client's retry
            # with the same id, must get through. A turn that did reach Rasa and is run again is safe: the
            # ticket service recognises the same resident's same report as a duplicate.
            await self._dedup.forget(message.channel, message.message_id)
            MESSAGES_IN.labels(message.channel, "error").inc()
            raise

    def _is_mapped(self, group_id: str) -> bool:
        with unit_of_work(self._factory) as session:
            return session.get(ChatGroup, group_id) is not None

    def _unmapped(self, message: IncomingMessage) -> list[OutgoingMessage]:
        """A group the bot was added to but no admin has mapped: it cannot file tickets there, so it stays quiet."""
        assert message.group_id is not None
        if message.group_id not in self._unmapped_logged:
            self._unmapped_logged.add(message.group_id)
            log.warning(
                "message in unmapped group %s (%s) on %s: map it with `gridbot group add`",
                message.group_id, message.room_topic or "?", message.channel,
            )
        if not message.mentions_bot:
            return []
        reply = t("channels.unmapped_group")
        mention = (Mention(message.sender_id, message.sender_name),)
        return [OutgoingMessage(TargetType.ROOM, message.group_id, reply, mention, channel=message.channel)]
