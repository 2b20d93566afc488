"""The channel-neutral layer: outbound routing, splitting, pacing, retries; inbound de-duplication and filters.

`RecordingPlatform` stands in for a platform at its edge (what WeChat or WeCom would receive): it records each
call and can be told to refuse. Everything between it and the caller — the dispatcher, the outbound table,
the Redis rate limits, the intake — is the real code on real SQLite/PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import redis.asyncio as aioredis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.channels.base import Capabilities, ChannelBase, Health, HealthStatus, Intake
from bot.channels.dedup import Deduplicator
from bot.channels.dispatch import Dispatcher, RetryPolicy
from bot.channels.intake import MessageIntake
from bot.channels.outbound import OutboundMessage, OutboundStatus
from bot.channels.ratelimit import MemoryRateLimiter, RedisRateLimiter
from bot.channels.registry import ChannelRegistry
from bot.channels.sender import SendError, SendLimits
from bot.messages import IncomingMessage, Media, MediaKind, Mention, OutgoingMessage, TargetType
from bot.texts import text as t
from grid.geography import ChatGroup, Worker
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.conftest import REDIS_URL
from tests.servers import Chat


@dataclass
class Sent:
    kind: str
    target: str
    text: str
    mentions: tuple[str, ...] = ()
    key: str = ""


@dataclass
class RecordingPlatform(ChannelBase):
    name: str = "fakechat"
    account: str = "bot-account"
    capabilities: Capabilities = field(
        default_factory=lambda: Capabilities(
            max_text_chars=60, reply_limits=SendLimits(per_account=None, per_group=None, jitter_seconds=0.0)
        )
    )
    sent: list[Sent] = field(default_factory=list)
    refuse: SendError | None = None

    async def start(self, intake: Intake) -> None:
        pass

    async def stop(self) -> None:
        pass

    def health(self) -> Health:
        return Health(HealthStatus.UP)

    def _take(self, item: Sent) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.sent.append(item)

    async def say_to_room(self, room_id: str, text: str, mentions: Sequence[Mention] = (), *, key: str) -> None:
        self._take(Sent("room", room_id, text, tuple(m.id for m in mentions), key))

    async def say_to_contact(self, contact_id: str, text: str, *, key: str) -> None:
        self._take(Sent("contact", contact_id, text, (), key))

    async def send_media(self, target_type: TargetType, target_id: str, media: Media, *, key: str) -> None:
        self._take(Sent(f"media:{target_type.value}", target_id, media.url, (), key))


FAST_RETRY = RetryPolicy(first_seconds=0.0, max_seconds=0.0, max_attempts=3, max_wait_seconds=0.2)


def _dispatcher(factory: sessionmaker[Session], platform: RecordingPlatform, **kwargs: object) -> Dispatcher:
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    limiter = kwargs.pop("limiter", MemoryRateLimiter())
    return Dispatcher(ChannelRegistry([platform]), factory, limiter, namespace, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    yield session_factory
    with unit_of_work(session_factory) as session:
        session.execute(update(OutboundMessage).values(status=OutboundStatus.SENT))  # nothing left for other tests


def _rows(factory: sessionmaker[Session], target: str) -> list[OutboundMessage]:
    with unit_of_work(factory) as session:
        query = select(OutboundMessage).where(OutboundMessage.target_id == target).order_by(OutboundMessage.id)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def _room(target: str, text: str, *mentions: Mention) -> OutgoingMessage:
    return OutgoingMessage(TargetType.ROOM, target, text, tuple(mentions), channel="fakechat")


def test_long_reply_is_split_with_the_mention_on_the_first_part_only(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform()
    room = f"room-{uuid.uuid4().hex[:6]}@chatroom"
    body = "".join(f"第{i}项：请带身份证原件到社区服务中心窗口办理。" for i in range(1, 7))
    asyncio.run(_dispatcher(factory, platform).send([_room(room, body, Mention("u1", "小王"))], origin="fakechat"))
    assert len(platform.sent) > 1
    assert all(len(s.text) <= 60 for s in platform.sent)
    assert platform.sent[0].mentions == ("u1",) and all(s.mentions == () for s in platform.sent[1:])
    total = len(platform.sent)
    assert all(s.text.endswith(f"（{i}/{total}）") for i, s in enumerate(platform.sent, 1))
    assert {r.status for r in _rows(factory, room)} == {OutboundStatus.SENT}
    assert len({s.key for s in platform.sent}) == len(platform.sent)


def test_failed_send_is_kept_and_retried_in_order_until_it_goes_out(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform(refuse=SendError("peer down"))
    room = f"room-{uuid.uuid4().hex[:6]}@chatroom"
    dispatcher = _dispatcher(factory, platform, retry=FAST_RETRY)

    async def scenario() -> None:
        await dispatcher.send([_room(room, "第一条"), _room(room, "第二条")], origin="fakechat")
        rows = _rows(factory, room)
        assert [r.status for r in rows] == [OutboundStatus.PENDING] * 2
        assert rows[0].attempts == 1 and rows[0].last_error == "peer down"
        assert rows[1].attempts == 0  # never tried before the first: order per target is kept
        platform.refuse = None
        assert await dispatcher.retry_due() == 2

    asyncio.run(scenario())
    assert [s.text for s in platform.sent] == ["第一条", "第二条"]
    assert [r.status for r in _rows(factory, room)] == [OutboundStatus.SENT] * 2


def test_a_send_that_cannot_succeed_is_marked_failed_and_logged(
    factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    platform = RecordingPlatform(refuse=SendError("bot was removed from the room", retryable=False))
    room = f"room-{uuid.uuid4().hex[:6]}@chatroom"
    with caplog.at_level(logging.ERROR, logger="bot.channels.dispatch"):
        asyncio.run(_dispatcher(factory, platform, retry=FAST_RETRY).send([_room(room, "通知")], origin="fakechat"))
    [row] = _rows(factory, room)
    assert row.status == OutboundStatus.FAILED and "removed" in (row.last_error or "")
    assert any("failed for good" in r.getMessage() for r in caplog.records)


def test_attempts_run_out_after_the_policy_s_maximum(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform(refuse=SendError("timeout"))
    room = f"room-{uuid.uuid4().hex[:6]}@chatroom"
    dispatcher = _dispatcher(factory, platform, retry=FAST_RETRY)

    async def scenario() -> None:
        await dispatcher.send([_room(room, "通知")], origin="fakechat")
        for _ in range(5):
            await dispatcher.retry_due()

    asyncio.run(scenario())
    [row] = _rows(factory, room)
    assert (row.status, row.attempts) == (OutboundStatus.FAILED, 3)


def test_replies_are_paced_per_room_through_redis_and_the_rest_wait_their_turn(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform(
        capabilities=Capabilities(
            max_text_chars=500, reply_limits=SendLimits(per_account=None, per_group=2, window_seconds=1.0, jitter_seconds=0.0)
        )
    )
    room = f"room-{uuid.uuid4().hex[:6]}@chatroom"

    async def scenario() -> list[int]:
        client = aioredis.from_url(REDIS_URL)
        try:
            dispatcher = _dispatcher(
                factory, platform, limiter=RedisRateLimiter(client), retry=RetryPolicy(max_wait_seconds=0.0)
            )
            await dispatcher.send([_room(room, f"消息{i}") for i in range(5)], origin="fakechat")
            counts = [len(platform.sent)]
            for _ in range(40):
                await asyncio.sleep(0.2)
                await dispatcher.retry_due()
                counts.append(len(platform.sent))
                if len(platform.sent) == 5:
                    break
            return counts
        finally:
            await client.aclose()

    counts = asyncio.run(scenario())
    assert counts[0] == 2  # the room's budget, then the rest are queued rather than sent in a burst
    assert counts[-1] == 5
    assert [s.text for s in platform.sent] == [f"消息{i}" for i in range(5)]


def test_messages_go_to_the_group_s_and_worker_s_own_channel(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform()
    suffix = uuid.uuid4().hex[:6]
    room, worker_id = f"room-{suffix}@chatroom", f"wxid_{suffix}"
    with unit_of_work(factory) as session:
        grid_code = session.scalars(select(ChatGroup.grid_code)).first()
        session.add(ChatGroup(id=room, name="测试群", grid_code=grid_code, channel="fakechat"))
        session.add(Worker(id=worker_id, name="测试网格员", grid_code=grid_code, channel="fakechat", on_duty=False))
    messages = [
        OutgoingMessage(TargetType.ROOM, room, "请您评价：满意/基本满意/不满意"),
        OutgoingMessage(TargetType.CONTACT, worker_id, "新工单"),
        OutgoingMessage(TargetType.CONTACT, worker_id, "", media=(Media(MediaKind.IMAGE, "/media/a.jpg"),)),
    ]
    try:
        asyncio.run(_dispatcher(factory, platform).send(messages, origin="webchat"))
    finally:
        with unit_of_work(factory) as session:  # other tests count the demo's groups and workers
            session.delete(session.get(ChatGroup, room))
            session.delete(session.get(Worker, worker_id))
    assert [(s.kind, s.target, s.text) for s in platform.sent] == [
        ("room", room, "请您评价：满意/基本满意/不满意"),
        ("contact", worker_id, "新工单"),
        ("media:contact", worker_id, "/media/a.jpg"),
    ]


def test_group_texts_are_masked_and_private_ones_are_not(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform()
    room = f"room-{uuid.uuid4().hex[:6]}@chatroom"
    dispatcher = _dispatcher(factory, platform, mask_for_group=lambda s: s.replace("13812345678", "138****5678"))
    asyncio.run(
        dispatcher.send(
            [
                _room(room, "已记录，联系电话13812345678"),
                OutgoingMessage(TargetType.CONTACT, "w1", "电话13812345678", channel="fakechat"),
            ],
            origin="fakechat",
        )
    )
    assert [s.text for s in platform.sent] == ["已记录，联系电话138****5678", "电话13812345678"]


# --- inbound ---------------------------------------------------------------------------------------------


def test_redelivered_ids_are_dropped_and_repeated_words_are_not() -> None:
    async def scenario() -> list[bool]:
        client = aioredis.from_url(REDIS_URL)
        try:
            dedup = Deduplicator(client, f"test-{uuid.uuid4().hex[:8]}", ttl_seconds=60)
            return [
                await dedup.first_time("wechaty", "m1"),
                await dedup.first_time("wechaty", "m1"),  # redelivery
                await dedup.first_time("wechaty", "m2"),  # "怎么样了" typed again: a new id
                await dedup.first_time("wecom", "m1"),  # ids are per platform
                await dedup.first_time("wechaty", None),  # no id: cannot be recognised, always handled
                await dedup.first_time("wechaty", None),
            ]
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [True, False, True, True, True, True]


def test_dedup_keeps_working_in_memory_when_redis_is_down(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[bool]:
        dead = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        try:
            dedup = Deduplicator(dead, "test")
            return [await dedup.first_time("wechaty", "x"), await dedup.first_time("wechaty", "x")]
        finally:
            await dead.aclose()

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(scenario()) == [True, False]
    assert any("falls back to memory" in r.getMessage() for r in caplog.records)


def _intake(factory: sessionmaker[Session], platform: RecordingPlatform) -> MessageIntake:
    dispatcher = _dispatcher(factory, platform)
    accounts = {platform.name: platform.account}
    # The router is never reached in these cases; a turn that needed it would fail loudly on None.
    return MessageIntake(None, dispatcher, Deduplicator(None, "test"), factory, accounts.get)  # type: ignore[arg-type]


def test_own_messages_and_unmapped_groups(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform()
    intake = _intake(factory, platform)
    room = f"unmapped-{uuid.uuid4().hex[:6]}@chatroom"

    def message(sender: str, mentioned: bool, message_id: str) -> IncomingMessage:
        return IncomingMessage(
            "fakechat", sender, "居民", "楼道灯坏了", group_id=room, mentions_bot=mentioned, message_id=message_id
        )

    async def scenario() -> list[list[OutgoingMessage]]:
        return [
            await intake.receive(message("bot-account", True, "a")),  # the bot's own message echoed back
            await intake.receive(message("wxid_1", False, "b")),  # unmapped group, not addressed: silence
            await intake.receive(message("wxid_1", True, "c")),  # addressed: says the group is not set up
            await intake.receive(message("wxid_1", True, "c")),  # the platform redelivers it
        ]

    own, quiet, told, redelivered = asyncio.run(scenario())
    assert own == [] and quiet == [] and redelivered == []
    assert [m.text for m in told] == [t("channels.unmapped_group")]
    assert [(s.target, s.mentions) for s in platform.sent] == [(room, ("wxid_1",))]


def test_outbound_rows_due_later_are_not_sent_early(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform(refuse=SendError("down"))
    room = f"room-{uuid.uuid4().hex[:6]}@chatroom"
    dispatcher = _dispatcher(factory, platform, retry=RetryPolicy(first_seconds=3600, max_attempts=5, max_wait_seconds=0.1))

    async def scenario() -> int:
        await dispatcher.send([_room(room, "稍后")], origin="fakechat")
        platform.refuse = None
        return await dispatcher.retry_due()

    assert asyncio.run(scenario()) == 0
    [row] = _rows(factory, room)
    assert row.status == OutboundStatus.PENDING and row.next_attempt_at > utcnow() + timedelta(minutes=25)


@pytest.mark.rasa
def test_web_chat_redelivery_is_answered_once_and_a_repeat_with_a_new_id_again(
    chat: Chat, resident: tuple[str, str]
) -> None:
    sender, name = resident
    ask = {"group_id": "demo-grid-1", "sender_id": sender, "sender_name": name, "text": "高龄补贴怎么申请", "mentions_bot": True}
    first = chat.post(**ask, message_id=f"{sender}-1").json()["replies"]
    again = chat.post(**ask, message_id=f"{sender}-1").json()["replies"]
    repeat = chat.post(**ask, message_id=f"{sender}-2").json()["replies"]
    assert first and again == [] and repeat


def test_the_local_chat_can_be_switched_off_for_public_servers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from bot.app import create_app
    from bot.settings import Settings

    def served(enabled: bool) -> tuple[set[str], int]:
        app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", local_chat_enabled=enabled))
        return set(app.openapi()["paths"]), TestClient(app).get("/chat").status_code

    (on, chat_on), (off, chat_off) = served(True), served(False)
    assert {"/api/v1/local/messages", "/api/v1/local/transcript"} <= on and chat_on == 200
    assert not any(p.startswith("/api/v1/local") for p in off) and chat_off == 404
    assert "/api/v1/channels" in off


def test_a_message_whose_handling_failed_is_handled_again_when_redelivered(factory: sessionmaker[Session]) -> None:
    platform = RecordingPlatform()
    intake = _intake(factory, platform)  # its router is None: handling a mapped group's message fails
    message = IncomingMessage("fakechat", "wxid_2", "居民", "路灯坏了", group_id="demo-grid-1", message_id="m-fail")

    async def attempt() -> str:
        try:
            await intake.receive(message)
        except AttributeError:
            return "failed"
        return "dropped as a redelivery"

    async def scenario() -> list[str]:
        return [await attempt(), await attempt()]

    assert asyncio.run(scenario()) == ["failed", "failed"]
