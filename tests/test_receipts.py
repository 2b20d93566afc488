"""Notes of messages a platform will not send again (bot/channels/receipts.py, bot/deferred.py), on SQLite and
PostgreSQL: settled when handled, held when handling fails, replayed when whoever handled them went away.

The WeCom tests run the whole path over HTTP, including an app killed mid-turn (tests/test_wecom_channel.py).
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.receipts import Receipts
from bot.deferred import HELD, RECEIVED, DeferredMessage, DeferredStore
from bot.messages import IncomingMessage, Media, MediaKind, OutgoingMessage


class Intake:
    """The adapters' side of the intake: takes the message, or fails like a turn whose database went away."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.received: list[IncomingMessage] = []

    async def receive(self, message: IncomingMessage) -> list[OutgoingMessage]:
        self.received.append(message)
        if self.failure is not None:
            raise self.failure
        return []


def message() -> IncomingMessage:
    return IncomingMessage(
        channel="wechaty", sender_id=f"r-{uuid.uuid4().hex[:6]}", sender_name="居民", text="楼道灯坏了 😡",
        group_id="demo-grid-1", mentions_bot=True, message_id=uuid.uuid4().hex,
    )  # fmt: skip


def statuses(factory: sessionmaker[Session], incoming: IncomingMessage) -> list[tuple[str, str | None]]:
    with factory() as session:
        rows = session.scalars(select(DeferredMessage).where(DeferredMessage.message_id == incoming.message_id))
        return [(row.status, row.last_error) for row in rows]


def test_a_handled_message_settles_its_note(session_factory: sessionmaker[Session]) -> None:
    receipts, intake, incoming = Receipts(session_factory), Intake(), message()

    async def deliver() -> None:
        noted = await receipts.note(incoming)
        assert statuses(session_factory, incoming) == [(RECEIVED, None)]
        await receipts.handle(intake, incoming, noted)

    asyncio.run(deliver())
    assert intake.received == [incoming]
    assert statuses(session_factory, incoming) == []


def test_a_failed_turn_turns_the_note_into_a_held_message(session_factory: sessionmaker[Session]) -> None:
    receipts, intake, incoming = Receipts(session_factory), Intake(ConnectionError("database went away")), message()

    async def deliver() -> None:
        await receipts.handle(intake, incoming, await receipts.note(incoming))

    asyncio.run(deliver())
    assert statuses(session_factory, incoming) == [(HELD, "ConnectionError: database went away")]
    replayed = [held for _, held in DeferredStore(session_factory).held(limit=10_000)]
    assert incoming in replayed  # the same message, text and emoji included, for the deferred job


def test_a_private_report_keeps_its_grid_and_pictures_when_held_and_when_replayed_after_a_crash(
    session_factory: sessionmaker[Session],
) -> None:
    """An iLink report has no group: its grid (the binding's) is all that files it, so the replay must carry it."""
    photo = Media(MediaKind.IMAGE, "http://bot.example/media/abc.jpg", "abc.jpg", "image/jpeg", 2048)
    store = DeferredStore(session_factory, received_stale_seconds=0)
    held, crashed = (
        IncomingMessage(
            channel="ilink",
            sender_id=f"o{uuid.uuid4().hex[:8]}@im.wechat",
            sender_name="微信用户",
            text="楼道灯坏了",
            message_id=uuid.uuid4().hex,
            grid_code="demo-grid-1",
            media=(photo,),
        )
        for _ in range(2)
    )
    held_id = store.hold(held, "rasa unavailable")
    crashed_id = store.note(crashed)  # the process noting it died before the turn ended
    replayed = dict(store.held(limit=10_000))
    assert replayed[held_id] == held and replayed[crashed_id] == crashed
    assert (replayed[held_id].grid_code, replayed[held_id].media) == ("demo-grid-1", (photo,))
    plain = message()  # a group message keeps no grid of its own and no pictures
    plain_id = store.hold(plain, "rasa unavailable")
    assert dict(store.held(limit=10_000))[plain_id] == plain


def test_a_message_that_could_not_be_noted_is_still_held_if_its_turn_fails(session_factory: sessionmaker[Session]) -> None:
    receipts, incoming = Receipts(session_factory), message()
    asyncio.run(receipts.handle(Intake(RuntimeError("boom")), incoming, None))
    assert statuses(session_factory, incoming) == [(HELD, "RuntimeError: boom")]


def test_a_note_nobody_settled_is_replayed_only_once_stale(session_factory: sessionmaker[Session]) -> None:
    incoming = message()
    row_id = DeferredStore(session_factory).note(incoming)
    fresh = DeferredStore(session_factory, received_stale_seconds=3600).held(limit=10_000)
    assert row_id not in [held_id for held_id, _ in fresh]  # a live process may still be handling it
    assert statuses(session_factory, incoming) == [(RECEIVED, None)]

    stale = DeferredStore(session_factory, received_stale_seconds=0).held(limit=10_000)
    assert (row_id, incoming) in stale
    [(status, error)] = statuses(session_factory, incoming)
    assert status == HELD and error is not None and "stopped" in error
    # The process that noted it, if it was only slow, cannot settle it away from the replay any more.
    DeferredStore(session_factory).settle(row_id)
    assert [status for status, _ in statuses(session_factory, incoming)] == [HELD]


def test_a_platforms_nul_and_lone_surrogates_are_dropped_before_anything_stores_them(
    session_factory: sessionmaker[Session],
) -> None:
    """A platform's text is not refused like an API request: a NUL or a lone surrogate from wechaty would make
    PostgreSQL refuse the arrival note (and the transcript, the ticket); they are dropped when the message is made."""
    incoming = IncomingMessage(
        channel="wechaty", sender_id=f"r-{uuid.uuid4().hex[:6]}\x00", sender_name="居\ud800民", text="楼道\x00灯坏了\udfff",
        group_id="demo-grid-1", mentions_bot=True, message_id=uuid.uuid4().hex,
    )  # fmt: skip
    assert (incoming.text, incoming.sender_name) == ("楼道灯坏了", "居民") and "\x00" not in incoming.sender_id
    asyncio.run(Receipts(session_factory).note(incoming))
    with session_factory() as session:
        row = session.scalar(select(DeferredMessage).where(DeferredMessage.message_id == incoming.message_id))
        assert row is not None and row.text == "楼道灯坏了" and row.status == RECEIVED
