"""The local web chat channel: residents and workers played in a browser; the transcript lives in the database.

It is the channel every test and demo uses, so it behaves like a platform: rooms and contacts, @mentions
rendered in the text, and messages the bot sends on its own (a worker's 办结 posts in the group) appear
in the transcript the page polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from bot.channels.base import Capabilities, ChannelBase, Health, HealthStatus, Intake
from bot.channels.sender import SendLimits
from bot.messages import IncomingMessage, Media, Mention, OutgoingMessage, TargetType
from grid.geography import ChatGroup
from storage.base import Base, utcnow
from storage.engine import unit_of_work
from storage.types import UTCDateTime

BOT_SENDER_ID = "gridbot"


class WebChatMessage(Base):
    __tablename__ = "webchat_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    target_type: Mapped[str] = mapped_column(String(8))
    target_id: Mapped[str] = mapped_column(String(128), index=True)
    direction: Mapped[str] = mapped_column(String(3))
    sender_id: Mapped[str] = mapped_column(String(128))
    sender_name: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def render(message: OutgoingMessage) -> str:
    """WeChat shows an @mention as '@name' before the text; the web chat does the same, and media as links."""
    prefix = "".join(f"@{m.name} " for m in message.mentions)
    attachments = "".join(f"\n[{m.kind.value}] {m.url}" for m in message.media)
    return (prefix + message.text + attachments).strip()


class WebChatChannel(ChannelBase):
    name = "webchat"
    # The bot's one account here. No platform limits the web chat; the conservative defaults keep pushes
    # paced as they will be on WeChat, so the demo and the tests show the real behaviour. Replies are written
    # straight into the transcript (a local channel), so reply limits never apply.
    account = BOT_SENDER_ID
    capabilities = Capabilities(max_text_chars=4000, can_send_media=True, limits=SendLimits())

    def __init__(self, factory: sessionmaker[Session], bot_name: str) -> None:
        self._factory = factory
        self._bot_name = bot_name

    async def start(self, intake: Intake) -> None:
        """Messages arrive through the HTTP API (bot/api/local.py), which calls the intake itself."""

    async def stop(self) -> None:
        pass

    def health(self) -> Health:
        return Health(HealthStatus.UP, account=self.account)

    def record_incoming(self, message: IncomingMessage) -> bool:
        """Writes the message to its transcript; False (nothing written) when its group is not mapped to a grid.

        One transaction for both: the API's 404 for an unknown group costs no lookup of its own.
        """
        target_type, target_id = (
            (TargetType.CONTACT, message.sender_id) if message.is_private else (TargetType.ROOM, message.group_id)
        )
        with unit_of_work(self._factory) as session:
            if message.group_id is not None and session.get(ChatGroup, message.group_id) is None:
                return False
            session.add(
                WebChatMessage(
                    target_type=target_type,
                    target_id=target_id,
                    direction="in",
                    sender_id=message.sender_id,
                    sender_name=message.sender_name,
                    text=(message.text + "".join(f"\n[{m.kind.value}] {m.url}" for m in message.media)).strip(),
                )
            )
        return True

    def _record_outgoing(self, messages: Sequence[OutgoingMessage]) -> None:
        with unit_of_work(self._factory) as session:
            session.add_all(
                WebChatMessage(
                    target_type=m.target_type,
                    target_id=m.target_id,
                    direction="out",
                    sender_id=BOT_SENDER_ID,
                    sender_name=self._bot_name,
                    text=render(m),
                )
                for m in messages
            )

    async def deliver(self, messages: Sequence[OutgoingMessage]) -> None:
        if messages:
            await asyncio.to_thread(self._record_outgoing, messages)

    async def say_to_room(self, room_id: str, text: str, mentions: Sequence[Mention] = (), *, key: str) -> None:
        await self.deliver([OutgoingMessage(TargetType.ROOM, room_id, text, tuple(mentions))])

    async def say_to_contact(self, contact_id: str, text: str, *, key: str) -> None:
        await self.deliver([OutgoingMessage(TargetType.CONTACT, contact_id, text)])

    async def send_media(self, target_type: TargetType, target_id: str, media: Media, *, key: str) -> None:
        await self.deliver([OutgoingMessage(target_type, target_id, "", media=(media,))])

    def write_to_room(self, session: Session, room_id: str, text: str) -> None:
        """LocalRoomSender: the transcript row joins the caller's transaction, beside its delivery record."""
        session.add(
            WebChatMessage(
                target_type=TargetType.ROOM,
                target_id=room_id,
                direction="out",
                sender_id=BOT_SENDER_ID,
                sender_name=self._bot_name,
                text=text,
            )
        )

    def transcript(self, target_type: TargetType, target_id: str, after: int = 0, limit: int = 200) -> list[WebChatMessage]:
        with unit_of_work(self._factory) as session:
            query = (
                select(WebChatMessage)
                .where(
                    WebChatMessage.target_type == target_type, WebChatMessage.target_id == target_id, WebChatMessage.id > after
                )
                .order_by(WebChatMessage.id)
                .limit(limit)
            )
            return list(session.scalars(query))
