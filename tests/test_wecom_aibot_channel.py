"""The WeCom smart robot channel against WeCom's side of its long connection, played on loopback.

tests/wecom_aibot_peer.py is a WebSocket server speaking the frames the official SDKs speak; the app connects
out to it exactly as it would to wss://openws.work.weixin.qq.com. Members @-mention the robot in groups and
write to it privately; the tests read back what the robot replied in place (with the callback's req_id) and what
it pushed, on which connection.

Most tests use a database of their own (the notice tests' map plus a grid on the smart robot) and no Rasa: a
message in a mapped group or a private chat is then held and the member told to wait, which is the answer these
tests watch. The drop test and the kill test use a stand-in Rasa whose turns can be held open; the conversation
of the foundation slice (marker `rasa`) runs through the trained Rasa server on the session's database.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app_process import app_process, start_app, stop, wait_healthy
from bot.channels.base import HealthStatus
from bot.channels.outbound import OutboundMessage, OutboundStatus
from bot.channels.wecom_aibot import AibotChannel, build_channel
from bot.channels.wecom_aibot.markdown import compose, escape
from bot.channels.wecom_aibot.protocol import MalformedFrame, parse
from bot.deferred import DONE, HELD, RECEIVED, DeferredMessage
from bot.embedded import free_port
from bot.messages import Mention
from bot.settings import PROJECT_ROOT, Settings
from bot.texts import text as t
from grid.geography import ChatGroup, Grid, Worker
from grid.notices import NoticeDelivery, NoticeTarget
from grid.service import TicketService
from grid.tickets import Ticket
from storage.engine import make_engine, make_session_factory, unit_of_work
from tests.conftest import REDIS_URL
from tests.notice_world import new_notice, notice_database
from tests.servers import FakeRasa
from tests.support.channel_hosts import app_host, own_database
from tests.wecom_aibot_peer import BOT_ID, SECRET, AibotHost, AibotPeer

RESIDENT = "zhangsan"
WORKER = "wangwu"
TICKET_NUMBER = re.compile(r"GD\d{8}-\d{4}")
GRIDBOT = str(Path(sys.executable).parent / "gridbot")
# Notices into a smart robot chat: 2 per 2 s here instead of 20 a minute, so pacing shows in seconds.
FAST_LIMITS = {"wecom_aibot": {"per_group": 2, "window_seconds": 2, "per_account": None, "jitter_seconds": 0}}


def _png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, grey) PNG picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def peer() -> Iterator[AibotPeer]:
    server = AibotPeer()
    server.start()
    yield server
    server.stop()


def _settings(database_url: str, peer: AibotPeer, folder: Path, rasa_url: str | None = None, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "rasa_url": rasa_url or f"http://127.0.0.1:{free_port()}",  # nothing listens: messages are held
        "app_port": free_port(),
        "kb_embedding_model": "none",
        "wecom_aibot_bot_id": BOT_ID,
        "wecom_aibot_secret": SECRET,
        "wecom_aibot_ws_url": peer.url,
        "wecom_aibot_reconnect_first_seconds": 0.2,
        "wecom_aibot_reconnect_max_seconds": 1.0,
        "wecom_aibot_request_timeout_seconds": 3.0,
        "media_dir": folder / "media",
        "outbound_retry_seconds": 0.3,
        "notice_sweep_seconds": 0.3,
        "notice_retry_first_seconds": 0.5,
        "deferred_retry_seconds": 3600,  # held messages stay held: what a test reads
        "notice_rate_limits": json.dumps(FAST_LIMITS),
    }
    return Settings(**(values | extra))


def _chat() -> str:
    return f"wrk{uuid.uuid4().hex[:16]}"  # a WeCom group chatid


def _user(prefix: str = "resident") -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


# --- without Rasa: a database of this module's own ----------------------------------------------------


own_db = own_database("aibot-db")
host = app_host(AibotHost, _settings)


def _aibot_grid(factory: sessionmaker[Session], *chats: str) -> str:
    """A grid of its own whose worker is on the smart robot, with `chats` mapped to it."""
    code = f"aib-grid-{uuid.uuid4().hex[:6]}"
    with unit_of_work(factory) as session:
        session.add(Grid(code=code, name="企微机器人网格", community_code="demo-community-1"))
        session.flush()
        if session.get(Worker, WORKER) is None:
            session.add(Worker(id=WORKER, name="王五", grid_code=code, channel="wecom_aibot"))
        session.add_all(ChatGroup(id=chat, name="阳光小区居民群", grid_code=code, channel="wecom_aibot") for chat in chats)
    return code


def _rows(factory: sessionmaker[Session], target: str) -> list[OutboundMessage]:
    with unit_of_work(factory) as session:
        query = select(OutboundMessage).where(OutboundMessage.target_id == target).order_by(OutboundMessage.id)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def _wait(condition: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _deferred(factory: sessionmaker[Session], message_id: str) -> list[DeferredMessage]:
    with factory() as session:
        return list(session.scalars(select(DeferredMessage).where(DeferredMessage.message_id == message_id)))


def test_a_group_at_message_is_answered_in_place_once_per_message_id(peer: AibotPeer, host: AibotHost) -> None:
    chat, resident = _chat(), _user()  # a group no admin mapped: the bot says so when @-mentioned
    first = peer.say(resident, "你好", chat=chat)
    first_req_id = peer.callback_req_ids[-1]
    [reply] = peer.wait_sent(chat)
    assert reply.kind == "reply" and reply.content == escape(t("channels.unmapped_group")), reply
    assert reply.frame["body"]["stream"]["finish"] is True and "<@" not in reply.content  # the reply answers its sender

    peer.say(resident, "你好", chat=chat, msgid=first)  # WeCom delivers the same message again
    peer.say(resident, "你好", chat=chat)  # the same words as a new message
    third_req_id = peer.callback_req_ids[-1]
    # Messages of one chat are handled in arrival order: once the third is answered, the second was dealt with.
    _wait(lambda: [r for r in peer.sent(chat) if r.req_id == third_req_id], "the answer to the third message")
    assert [(r.kind, r.req_id) for r in peer.sent(chat)] == [("reply", first_req_id), ("reply", third_req_id)]


def test_a_private_voice_note_is_heard_as_its_words_and_held_while_rasa_is_down(
    peer: AibotPeer, host: AibotHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    user = _user()
    msgid = peer.send_voice(user, "楼道灯坏了 三号楼")
    [reply] = peer.wait_sent(user)
    assert reply.kind == "reply" and reply.content == escape(t("router.rasa_down")), reply
    [row] = _wait(lambda: [r for r in _deferred(own_db[1], msgid) if r.status == HELD], "the held voice note")
    assert (row.channel, row.sender_id, row.text, row.group_id) == ("wecom_aibot", user, "楼道灯坏了 三号楼", None)


def test_a_mixed_message_files_its_words_and_attaches_its_decrypted_picture(
    peer: AibotPeer, host: AibotHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    factory = own_db[1]
    chat, resident = _chat(), _user()
    _aibot_grid(factory, chat)
    with unit_of_work(factory) as session:
        filing = TicketService(session).file_report(
            group_id=chat, reporter_id=resident, reporter_name=resident, description="楼道灯坏了", location="3号楼2单元"
        )
        number = filing.ticket.number

    picture = _png()
    msgid = peer.send_mixed(resident, "灯还是不亮", picture, chat=chat)
    held, attached = peer.wait_sent(chat, count=2)
    # The words: held for Rasa, the resident told in place; the picture: attached, said in a second message.
    assert held.kind == "reply" and held.content == escape(t("router.rasa_down")), held
    assert attached.kind == "push" and attached.content == compose(
        t("photos.attached", number=number), [Mention(resident, resident)], mention_bytes=160
    ), attached
    _wait(lambda: [(r.status, r.text) for r in _deferred(factory, msgid)] == [(HELD, "灯还是不亮")], "the words held")
    with unit_of_work(factory) as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        event = ticket.events[-1]
        assert (event.action, event.actor_id) == ("photo", resident)
        [url] = event.photos or []
    served = httpx.get(host.url + url)
    assert served.status_code == 200 and served.content == picture  # decrypted: the bytes the resident sent


def test_the_words_of_a_mixed_message_are_noted_before_its_picture_is_downloaded(
    peer: AibotPeer, host: AibotHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    """WeCom sends a message once: while its picture downloads (seconds), the words are already noted, so a crash
    in that window leaves them to the deferred job instead of losing them."""
    factory = own_db[1]
    chat, resident = _chat(), _user()
    _aibot_grid(factory, chat)
    silent = socket.socket()  # takes the connection (the backlog) and never answers: the download hangs
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        image = {"url": f"http://127.0.0.1:{silent.getsockname()[1]}/files/slow", "aeskey": peer.picture(_png())["aeskey"]}
        items = [{"msgtype": "text", "text": {"content": "@网格助手 灯还是不亮"}}, {"msgtype": "image", "image": image}]
        msgid = peer.callback(resident, {"msgtype": "mixed", "mixed": {"msg_item": items}}, chat=chat)
        noted = _wait(lambda: _deferred(factory, msgid), "the words noted while the picture downloads")
        assert [(r.status, r.text) for r in noted] == [(RECEIVED, "灯还是不亮")]
    finally:
        silent.close()  # the download fails now: the words are handled without the picture
    _wait(lambda: [(r.status, r.text) for r in _deferred(factory, msgid)] == [(HELD, "灯还是不亮")], "the words held")


def test_a_notice_is_pushed_into_a_group_that_has_talked_to_the_robot(
    peer: AibotPeer, host: AibotHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    factory = own_db[1]
    chat = _chat()
    peer.known_chats.add(chat)  # the robot was @-mentioned there before: WeCom lets it push there
    grid = _aibot_grid(factory, chat)
    title = f"停水通知{uuid.uuid4().hex[:4]}"
    notice_id = new_notice(factory, NoticeTarget(grids=(grid,)), title=title, body="明天上午9点到12点小区停水，请提前储水。")
    [pushed] = peer.wait_sent(chat)
    assert pushed.kind == "push" and title in pushed.content and "请提前储水" in pushed.content, pushed
    assert pushed.frame["body"]["msgtype"] == "markdown" and pushed.frame["body"]["chatid"] == chat

    def delivered() -> bool:
        with unit_of_work(factory) as session:
            delivery = session.scalar(select(NoticeDelivery).where(NoticeDelivery.notice_id == notice_id))
            return delivery is not None and delivery.status == "sent"

    _wait(delivered, "the delivery marked sent")


def test_a_long_notice_is_paced_within_the_chat_limit_and_a_refused_push_is_retried(
    peer: AibotPeer, host: AibotHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    factory = own_db[1]
    paced, refused_twice = _chat(), _chat()
    peer.known_chats.update({paced, refused_twice})
    grid = _aibot_grid(factory, paced)
    peer.chat_limit = (2, 2.0)  # WeCom refuses a 3rd message into a chat within 2 s
    try:
        body = ("冬季供暖通知🔥请各位居民注意用火安全，" * 200)[:1990]  # parts of at most 984 characters
        title = f"供暖{uuid.uuid4().hex[:4]}"
        new_notice(factory, NoticeTarget(grids=(grid,)), title=title, body=body)
        first = peer.wait_sent(paced)[0]
        total = int(first.content.rsplit("/", 1)[1].rstrip("）"))
        assert total >= 3, first.content[-20:]
        parts = peer.wait_sent(paced, count=total, timeout=40)
        assert [p.content.endswith(f"（{i}/{total}）") for i, p in enumerate(parts, start=1)] == [True] * total
        assert all(len(p.content.encode()) <= 4096 for p in parts)
        assert [r for r in peer.refused if r["chat"] == paced] == []  # paced at the edge: WeCom never had to refuse
        for earlier, later in zip(parts, parts[2:], strict=False):
            assert later.at - earlier.at >= 1.9, [round(p.at - parts[0].at, 2) for p in parts]
    finally:
        peer.chat_limit = None

    peer.failures[refused_twice] = 2
    other_grid = _aibot_grid(factory, refused_twice)
    new_notice(factory, NoticeTarget(grids=(other_grid,)), title="疫苗接种", body="本周六社区卫生站接种流感疫苗。")
    [pushed] = peer.wait_sent(refused_twice, timeout=30)
    refused = [r for r in peer.refused if r["chat"] == refused_twice]
    assert [r["errcode"] for r in refused] == [45009, 45009]
    assert [r["frame"]["body"] for r in refused] == [pushed.frame["body"]] * 2  # the same message, tried again


def test_malformed_frames_are_skipped_and_the_connection_kept(
    peer: AibotPeer, host: AibotHost, caplog: pytest.LogCaptureFixture
) -> None:
    connection, subscriptions, since = peer.connection_number(), peer.subscriptions, host.channel.health().since
    chat, resident = _chat(), _user()
    caplog.set_level(logging.WARNING, logger="bot.channels.wecom_aibot")
    for raw in (
        "this is not JSON",
        "[1, 2, 3]",
        '{"cmd": "aibot_msg_callback"}',
        '{"cmd": "aibot_msg_callback", "headers": {"req_id": "r1"}, "body": null}',
        '{"cmd": "aibot_msg_callback", "headers": {"req_id": "r2"}, "body": [1]}',
        '{"cmd": "aibot_msg_callback", "headers": {"req_id": "r3"}, "body": {"msgtype": "text", "msgid": "m3"}}',
        '{"headers": {"req_id": "r4"}, "errcode": "zero"}',
        b"\x00\x01binary",
    ):
        peer.send_raw(raw)
    peer.callback(resident, {"msgtype": "location", "location": {"latitude": 30.1}}, chat=chat)  # a kind not taken
    peer.callback(resident, {"msgtype": "event", "event": {"eventtype": "enter_chat"}})  # an event in the wrong command

    peer.say(resident, "你好", chat=chat)
    [reply] = peer.wait_sent(chat)
    assert reply.kind == "reply" and reply.connection == connection and peer.subscriptions == subscriptions
    assert host.channel.health().status is HealthStatus.UP and host.channel.health().since == since
    skipped = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(skipped) >= 8, skipped


def test_a_newer_connection_taking_the_robot_over_stops_the_channel_with_why(peer: AibotPeer, host: AibotHost) -> None:
    subscriptions = peer.subscriptions
    peer.take_over()
    host.wait_health(HealthStatus.DOWN, timeout=15)
    assert "newer connection" in host.channel.health().detail
    runner = host.channel._runner  # type: ignore[attr-defined]
    _wait(lambda: runner is not None and runner.done(), "the connection task to end")
    assert peer.subscriptions == subscriptions and not peer.connected()


def test_a_wrong_secret_is_refused_and_health_says_so(
    peer: AibotPeer, own_db: tuple[str, sessionmaker[Session]], tmp_path: Path
) -> None:
    with AibotHost(_settings(own_db[0], peer, tmp_path, wecom_aibot_secret="not-the-secret")) as app:
        _wait(lambda: "refused" in app.channel.health().detail, "health to say the subscription was refused")
        assert app.channel.health().status is not HealthStatus.UP


def test_the_channel_runs_only_when_configured_and_half_a_configuration_stops_start_up(tmp_path: Path) -> None:
    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    assert build_channel(Settings(wecom_aibot_bot_id="", wecom_aibot_secret=""), factory) is None
    with pytest.raises(ValueError, match="WECOM_AIBOT_SECRET"):
        build_channel(Settings(wecom_aibot_bot_id=BOT_ID, wecom_aibot_secret=""), factory)
    with pytest.raises(ValueError, match="WECOM_AIBOT_WS_URL"):
        build_channel(Settings(wecom_aibot_bot_id=BOT_ID, wecom_aibot_secret=SECRET, wecom_aibot_ws_url="https://x"), factory)
    caps = AibotChannel.capabilities
    assert caps.max_text_bytes == 4096 and caps.max_text_chars * 4 + 160 <= 4096
    assert (caps.limits.per_group, caps.limits.window_seconds, caps.limits.jitter_seconds) == (20, 60.0, 0.0)


def test_texts_become_markdown_that_shows_them_as_typed() -> None:
    assert escape("#助手 3号楼*2 [图]\n第二行") == "\\#助手 3号楼\\*2 \\[图\\]  \n第二行"
    assert compose("请评价", [Mention("zhangsan", "张三")], mention_bytes=160) == "<@zhangsan> 请评价"
    assert compose("请评价", [Mention("x" * 200, "长")], mention_bytes=160) == "请评价"  # no room: the @ is left out
    for raw in ("", "{", "[]", '{"headers": {}}', '{"headers": {"req_id": "a"}, "body": 3}', b"\x00"):
        with pytest.raises(MalformedFrame):
            parse(raw)
    answer = parse('{"headers": {"req_id": "ping_1_ab"}, "errcode": 0, "errmsg": "ok"}')
    assert answer.is_answer and answer.req_id == "ping_1_ab"


# --- the connection dropped mid-conversation, and the app killed mid-turn: a stand-in Rasa ---------------


def test_a_dropped_connection_mid_turn_loses_and_doubles_nothing(
    peer: AibotPeer, own_db: tuple[str, sessionmaker[Session]], tmp_path: Path
) -> None:
    factory = own_db[1]
    answer = "好的，您反映的情况已收到"
    rasa = FakeRasa({}, reply=[{"recipient_id": "x", "text": answer}])
    chat, resident = _chat(), _user()
    _aibot_grid(factory, chat)
    try:
        with AibotHost(_settings(own_db[0], peer, tmp_path, rasa_url=rasa.url)) as host:
            host.wait_health(HealthStatus.UP)
            first_connection = peer.connection_number()
            peer.say(resident, "楼道里堆满了杂物", chat=chat)
            [before] = peer.wait_sent(chat)
            assert (before.kind, before.connection, before.content) == ("reply", first_connection, answer)

            rasa.open_turns.clear()  # the next turn hangs in Rasa
            dropped = peer.say(resident, "消防通道也被堵了", chat=chat)
            _wait(lambda: len(rasa.turns) == 2, "the second turn to reach Rasa")
            peer.refuse_connections = True  # WeCom unreachable for a while
            peer.drop()
            host.wait_health(HealthStatus.CONNECTING, timeout=15)
            rasa.open_turns.set()  # the answer comes while the robot is offline: kept for a retry
            _wait(lambda: [r for r in _rows(factory, chat) if r.attempts >= 1 and r.status == OutboundStatus.PENDING],
                  "the answer to be kept for a retry")  # fmt: skip
            assert "not connected" in (_rows(factory, chat)[-1].last_error or "")

            peer.refuse_connections = False
            host.wait_health(HealthStatus.UP, timeout=15)
            later = peer.wait_sent(chat, count=2)[1]
            # The callback's req_id died with the old connection: the answer is pushed into the group, with the @.
            assert later.kind == "push" and later.connection > first_connection, later
            assert later.content == compose(answer, [Mention(resident, resident)], mention_bytes=160)

            peer.say(resident, "消防通道也被堵了", chat=chat, msgid=dropped)  # WeCom delivers it again
            peer.say(resident, "什么时候能清理", chat=chat)
            last = peer.callback_req_ids[-1]
            # One chat's messages are handled in order: once the last is answered, the redelivery was dealt with.
            _wait(lambda: [r for r in peer.sent(chat) if r.req_id == last], "the answer to the last message")
            assert [(r.kind, r.connection) for r in peer.sent(chat)] == [
                ("reply", first_connection), ("push", later.connection), ("reply", later.connection)
            ]
            assert len(rasa.turns) == 3  # the redelivery ran no turn
            rows = _rows(factory, chat)
            assert [r.status for r in rows] == [OutboundStatus.SENT] * 3 and rows[1].attempts == 2
    finally:
        rasa.close()


def test_the_app_killed_mid_turn_loses_no_message(peer: AibotPeer, tmp_path: Path) -> None:
    """SIGKILL while Rasa works on a message: the next app process replays it and pushes the answer, once."""
    answer = "好的，您反映的情况已收到"
    rasa = FakeRasa({}, reply=[{"recipient_id": "x", "text": answer}])
    rasa.open_turns.clear()  # the first turn hangs: the app is mid-turn when it is killed
    user = _user()
    with notice_database("postgresql", tmp_path) as url:
        env = {
            "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "RASA_URL": rasa.url, "KB_EMBEDDING_MODEL": "none",
            "WECOM_AIBOT_BOT_ID": BOT_ID, "WECOM_AIBOT_SECRET": SECRET, "WECOM_AIBOT_WS_URL": peer.url,
            "WECOM_AIBOT_RECONNECT_FIRST_SECONDS": "0.2", "DEFERRED_RETRY_SECONDS": "0.5", "RECEIVED_STALE_SECONDS": "2",
            "OUTBOUND_RETRY_SECONDS": "0.5", "MEDIA_DIR": str(tmp_path / "media"),
        }  # fmt: skip
        port = free_port()
        engine = make_engine(url)
        factory = make_session_factory(engine)
        try:
            subscriptions = peer.subscriptions
            first = start_app(port, env, tmp_path / "first.log")
            try:
                wait_healthy(f"http://127.0.0.1:{port}", first, tmp_path / "first.log")
                _wait(lambda: peer.subscriptions > subscriptions and peer.connected(), "the first app to connect")
                msgid = peer.say(user, "楼道里堆满了杂物")
                _wait(lambda: rasa.turns, "the turn to reach Rasa")
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=30)
            finally:
                stop(first)
            assert [row.status for row in _deferred(factory, msgid)] == ["received"]  # noted before the turn
            assert peer.sent(user) == []

            rasa.open_turns.set()
            with app_process(free_port(), env, tmp_path / "second.log"):
                [sent] = peer.wait_sent(user, timeout=40)
                assert (sent.kind, sent.content) == ("push", answer)  # a new process holds no req_id: pushed
                _wait(lambda: [r.status for r in _deferred(factory, msgid)] == [DONE], "the replay to be done")
                _wait(lambda: [r.status for r in _rows(factory, user)] == [OutboundStatus.SENT], "the answer marked sent")
                assert len(peer.sent(user)) == 1  # replayed once (done), its one answer sent: nothing left to send it again
            assert [turn["message"] for turn in rasa.turns] == ["楼道里堆满了杂物"] * 2  # the killed turn, run again
        finally:
            engine.dispose()
            rasa.close()


# --- the foundation slice in a WeCom group, through the trained Rasa server ------------------------------


@pytest.mark.rasa
def test_a_report_in_a_group_files_a_ticket_and_the_worker_is_told_privately(
    peer: AibotPeer, database_url: str, app_url: str, rasa_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """@ report → where? → @ location → ticket, told in place; the worker's notice pushed; 办结 → the resident @-ed."""
    chat, resident, worker = _chat(), _user(), _user("worker")
    grid = f"aib-grid-{uuid.uuid4().hex[:6]}"
    with unit_of_work(session_factory) as session:
        session.add(Grid(code=grid, name="阳光社区企微网格", community_code="demo-community-1"))
    for args in (
        ["group", "add", chat, "--grid", grid, "--name", "阳光小区居民群", "--channel", "wecom_aibot"],
        ["group", "worker", worker, "--channel", "wecom_aibot", "--name", "赵网格员", "--grid", grid],
    ):
        done = _gridbot(database_url, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    peer.known_chats.add(worker)  # the worker has written to the robot before: WeCom lets it push to them

    with AibotHost(_settings(database_url, peer, tmp_path, rasa_url=rasa_url)) as host:
        host.wait_health(HealthStatus.UP)
        peer.say(resident, "楼道灯坏了 晚上黑乎乎的", chat=chat)
        [asked] = peer.wait_sent(chat, timeout=60)
        assert asked.kind == "reply" and "哪个位置" in asked.content, asked
        assert t("channels.answer_with_mention") in asked.content, asked  # unasked answers never reach this robot

        peer.say(resident, "3号楼2单元", chat=chat)  # in a smart robot group only @-messages reach the bot
        filed = peer.wait_sent(chat, count=2, timeout=60)[1]
        assert filed.kind == "reply", filed
        number = TICKET_NUMBER.search(filed.content).group(0)  # type: ignore[union-attr]
        [to_worker] = peer.wait_sent(worker, timeout=30)
        assert to_worker.kind == "push" and number in to_worker.content and "3号楼2单元" in to_worker.content, to_worker

        peer.say(worker, f"办结 {number} 已更换灯泡，恢复照明")  # the worker, privately
        done_reply = peer.wait_sent(worker, count=2, timeout=60)[1]
        assert done_reply.kind == "reply" and number in done_reply.content and "已办结" in done_reply.content
        told = peer.wait_sent(chat, count=3, timeout=30)[2]
        assert told.kind == "push" and told.content.startswith(f"<@{resident}> ") and "满意" in told.content, told
        assert t("channels.answer_with_mention") in told.content, told

    with unit_of_work(session_factory) as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        assert (ticket.group_id, ticket.grid_code, ticket.reporter_id, ticket.assignee_id) == (chat, grid, resident, worker)
        assert ticket.status == "resolved" and ticket.location == "3号楼2单元"


def _gridbot(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "DATABASE_URL", "NOTICE_", "WECOM_"))}
    env |= {"DATABASE_URL": database_url, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([GRIDBOT, *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120)
