"""Handling a message the platform will not deliver again, so that neither a failure nor a crash loses it.

WeCom is answered before its message is handled (its callback must return within 5 s) and a wechaty message
arrives once. So such an adapter notes the message in `deferred_messages` first (`note`), then hands it to
the intake (`handle`): handled → the note is settled; failed → the note becomes a held message that the
deferred job replays; the process killed or stopped mid-turn → the note goes stale and the deferred job
replays it (`DeferredStore.held`). A replayed turn that had in fact finished is safe for tickets (the ticket
service joins the same resident's same report); the resident may see an answer twice. A note keeps the text
and who said it where, as a held message does: a bare picture is not replayed.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.orm import Session, sessionmaker

from bot.channels.base import Intake
from bot.deferred import DeferredStore
from bot.messages import IncomingMessage

log = logging.getLogger(__name__)


class Receipts:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._store = DeferredStore(factory)

    async def note(self, message: IncomingMessage) -> int:
        """The note's id; raises when the database cannot take it (the caller decides what the platform hears)."""
        return await asyncio.to_thread(self._store.note, message)

    async def handle(self, intake: Intake, message: IncomingMessage, noted: int | None) -> None:
        """Run the intake on a message (`noted`: its note, None when it could not be noted) and settle the note."""
        try:
            await intake.receive(message)
        except Exception as exc:
            log.exception("%s message %s failed; holding it for retry", message.channel, message.message_id)
            error = f"{type(exc).__name__}: {exc}"
            try:
                if noted is None:
                    await asyncio.to_thread(self._store.hold, message, error)
                else:
                    await asyncio.to_thread(self._store.hold_noted, noted, error)
            except Exception:
                log.critical("%s message could not be held either, it is only in this log: %r", message.channel, message)
            return
        if noted is not None:
            try:
                await asyncio.to_thread(self._store.settle, noted)
            except Exception as exc:
                log.error("%s message %s was handled but its note #%s stays (%s): it will be replayed once stale",
                          message.channel, message.message_id, noted, exc)  # fmt: skip
