"""The wechaty channel against a real puppet-service peer: Node's PuppetServer with PuppetMock, on loopback.

The app runs with WECHATY_PUPPET_SERVICE_TOKEN/ENDPOINT pointing at the peer (tests/wechaty_peer.py) and the
peer plays WeChat: members speak with the platform's own @-mention list, send pictures and voice notes, add
the bot to rooms, and report back what the bot sent, with its mention ids.

Most tests use a database of their own (the notice tests' map plus a grid for WeChat), so notices and
queued messages of the channel host are never picked up by the session's app. The group conversation of the
foundation slice (marker `rasa`) runs on the session's database: Rasa's action endpoint is the session app,
and a second app, holding the wechaty connection, is the channel host on the same database.
"""

from __future__ import annotations

import os
import re
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

from bot.channels.base import HealthStatus
from bot.channels.outbound import OutboundMessage, OutboundStatus
from bot.channels.wechaty.inbound import strip_mentions
from bot.embedded import free_port
from bot.media_store import MediaRejected, MediaStore
from bot.messages import Media, MediaKind, Mention, OutgoingMessage, TargetType
from bot.settings import PROJECT_ROOT, Settings
from bot.texts import text as t
from grid.geography import ChatGroup, Grid, Worker
from grid.notices import NoticeDelivery, NoticeDraft, NoticeTarget, create_notice
from grid.service import TicketService
from grid.tickets import Ticket
from storage.engine import make_engine, make_session_factory, unit_of_work
from tests.conftest import REDIS_URL
from tests.support.channel_hosts import app_host, own_database
from tests.wechaty_peer import TOKEN, ChannelHost, WechatyPeer

BOT = ("wx_bot_self", "网格助手")
RESIDENT = ("wx_li", "李阿姨")
NEIGHBOUR = ("wx_zhang", "老张")
WORKER = ("wx_wang", "王网格员")
TICKET_NUMBER = re.compile(r"GD\d{8}-\d{4}")
GRIDBOT = str(Path(sys.executable).parent / "gridbot")


def _png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, grey) PNG picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
SILK = b"\x02#!SILK_V3" + b"\x00" * 40


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WechatyPeer]:
    world = {
        "bot": {"id": BOT[0], "name": BOT[1]},
        "contacts": [{"id": cid, "name": name} for cid, name in (RESIDENT, NEIGHBOUR, WORKER)],
        "rooms": [],
    }
    server = WechatyPeer(world, tmp_path_factory.mktemp("wechaty-peer"))
    server.start()
    yield server
    server.stop()


def _host_settings(database_url: str, peer: WechatyPeer, folder: Path, rasa_url: str | None = None) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        rasa_url=rasa_url or f"http://127.0.0.1:{free_port()}",  # nothing listens: these tests never need Rasa
        app_port=free_port(),
        kb_embedding_model="none",  # answers come from the session app's actions, not from this process
        wechaty_puppet_service_token=TOKEN,
        wechaty_puppet_service_endpoint=peer.endpoint,
        wechaty_reconnect_first_seconds=0.5,
        media_dir=folder / "media",
        outbound_retry_seconds=0.5,
        notice_sweep_seconds=0.5,
        notice_rate_limits='{"wechaty": {"jitter_seconds": 0}}',
    )


def _new_room(peer: WechatyPeer, members: list[str], topic: str = "幸福小区3号楼群") -> str:
    room = f"wx{uuid.uuid4().hex[:10]}@chatroom"  # wechaty room ids carry an @ (the peer routes by it)
    peer.add_room(room, topic, members)
    return room


# --- without Rasa: a database of this module's own ----------------------------------------------------


own_db = own_database("wechaty-db")
host = app_host(ChannelHost, _host_settings)


def _wechaty_grid(factory: sessionmaker[Session], *rooms: str) -> str:
    """A grid of its own whose worker is on WeChat, with `rooms` mapped to it as wechaty groups."""
    code = f"wx-grid-{uuid.uuid4().hex[:6]}"
    with unit_of_work(factory) as session:
        session.add(Grid(code=code, name="微信测试网格", community_code="demo-community-1"))
        session.flush()
        if session.get(Worker, WORKER[0]) is None:
            session.add(Worker(id=WORKER[0], name=WORKER[1], grid_code=code, channel="wechaty"))
        session.add_all(ChatGroup(id=room, name="幸福小区3号楼群", grid_code=code, channel="wechaty") for room in rooms)
    return code


def test_an_addressed_message_is_answered_with_a_real_mention_once_per_message_id(
    peer: WechatyPeer, host: ChannelHost
) -> None:
    room = _new_room(peer, [BOT[0], RESIDENT[0], NEIGHBOUR[0]])  # not mapped to a grid: the bot says so when addressed
    first = peer.say(RESIDENT[0], f"@{BOT[1]}\u2005你好", room=room, mentions=(BOT[0],))
    [reply] = peer.wait_sent(room=room)
    assert reply["mentionIdList"] == [RESIDENT[0]], reply
    assert reply["text"].startswith(f"@{RESIDENT[1]} ") and "还没有绑定" in reply["text"], reply

    peer.redeliver(first)  # the platform delivers the same message again
    peer.say(RESIDENT[0], "大家早上好", room=room)  # not addressed: nothing to say in an unmapped room
    _handled_so_far(peer, room)
    assert len(_not_to_the_neighbour(peer, room)) == 1

    peer.say(RESIDENT[0], f"@{BOT[1]}\u2005你好", room=room, mentions=(BOT[0],))  # the same words, a new message
    _handled_so_far(peer, room)
    assert len(_not_to_the_neighbour(peer, room)) == 2
    # "@网格助手" typed without the platform's mention list is not an @
    peer.say(RESIDENT[0], f"@{BOT[1]} 你好", room=room)
    _handled_so_far(peer, room)
    assert len(_not_to_the_neighbour(peer, room)) == 2


def _not_to_the_neighbour(peer: WechatyPeer, room: str) -> list[dict[str, Any]]:
    return [m for m in peer.sent(room=room) if m["mentionIdList"] != [NEIGHBOUR[0]]]


def _handled_so_far(peer: WechatyPeer, room: str, timeout: float = 30) -> None:
    """The neighbour addresses the bot in `room` and is answered. The channel handles one room's messages in
    arrival order, so whatever was said there before has been handled, and answered if it was to be: a negative
    check after this is final, where one after a fixed sleep would let a bug slower than the sleep pass."""
    answered = len(peer.sent(room=room)) - len(_not_to_the_neighbour(peer, room))
    peer.say(NEIGHBOUR[0], f"@{BOT[1]}\u2005在吗", room=room, mentions=(BOT[0],))
    deadline = time.monotonic() + timeout
    while len(peer.sent(room=room)) - len(_not_to_the_neighbour(peer, room)) <= answered:
        assert time.monotonic() < deadline, f"the neighbour's message in {room} was not answered"
        time.sleep(0.05)


def test_the_bot_added_to_a_room_introduces_itself_and_greets_new_members(
    peer: WechatyPeer, host: ChannelHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    room = _new_room(peer, [RESIDENT[0], NEIGHBOUR[0]])
    peer.join(room, [BOT[0]], RESIDENT[0])
    [welcome] = peer.wait_sent(room=room)
    assert welcome["text"].startswith(f"大家好，我是{BOT[1]}") and "报告问题" in welcome["text"], welcome
    assert "还没有绑定到网格" in welcome["text"] and welcome["mentionIdList"] == [], welcome

    _wechaty_grid(own_db[1], room)
    peer.join(room, [WORKER[0]], RESIDENT[0])
    greeting = peer.wait_sent(room=room, count=2)[1]
    assert greeting["mentionIdList"] == [WORKER[0]] and "欢迎入群" in greeting["text"], greeting


def test_a_picture_after_a_report_is_attached_to_the_ticket_and_served(
    peer: WechatyPeer, host: ChannelHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    factory = own_db[1]
    room = _new_room(peer, [BOT[0], RESIDENT[0], NEIGHBOUR[0]])
    _wechaty_grid(factory, room)
    with unit_of_work(factory) as session:
        filing = TicketService(session).file_report(
            group_id=room, reporter_id=RESIDENT[0], reporter_name=RESIDENT[1], description="楼道灯坏了", location="3号楼2单元"
        )
        number = filing.ticket.number

    picture = _png()
    peer.send_file(RESIDENT[0], "IMG_0001.png", picture, room=room)
    [reply] = peer.wait_sent(room=room)
    assert number in reply["text"] and reply["mentionIdList"] == [RESIDENT[0]], reply
    with unit_of_work(factory) as session:
        ticket = session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        event = ticket.events[-1]
        assert (event.action, event.actor_id) == ("photo", RESIDENT[0])
        [url] = event.photos or []
    assert re.fullmatch(r"/media/[0-9a-f]{32}\.png", url), url

    served = httpx.get(host.url + url)
    assert served.status_code == 200 and served.content == picture
    assert served.headers["content-type"] == "image/png" and served.headers["x-content-type-options"] == "nosniff"
    for bad in ("..%2F..%2Fgridbot.db", "0" * 32 + ".png", url.rsplit("/", 1)[1].replace(".png", ".jpg"), "x.html"):
        assert httpx.get(f"{host.url}/media/{bad}").status_code == 404, bad

    # A neighbour's picture, with no report of theirs, is ordinary group life: no reply.
    peer.send_file(NEIGHBOUR[0], "cat.jpg", JPEG, room=room)
    # A voice note in a private chat is addressed to the bot: it asks for text instead.
    peer.send_file(NEIGHBOUR[0], "voice.sil", SILK)
    [please_type] = peer.wait_sent(contact=NEIGHBOUR[0])
    assert "打字" in please_type["text"], please_type
    assert len(peer.sent(room=room)) == 1

    # The stored picture can be sent back out (to the worker, say) as a picture.
    host.run(host.channel.send_media(TargetType.CONTACT, WORKER[0], Media(MediaKind.IMAGE, url), key=uuid.uuid4().hex))
    [forwarded] = peer.wait_sent(contact=WORKER[0])
    assert forwarded["file"] == {"name": url.rsplit("/", 1)[1]} and forwarded["type"] == 6, forwarded  # 6: Image


def test_a_notice_is_pushed_into_a_wechaty_room(
    peer: WechatyPeer, host: ChannelHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    factory = own_db[1]
    room = _new_room(peer, [BOT[0], RESIDENT[0]])
    grid = _wechaty_grid(factory, room)
    with unit_of_work(factory) as session:
        body = "明天上午9点到12点小区停水，请提前储水。"
        draft = NoticeDraft(title="停水通知", body=body, author="阳光社区", target=NoticeTarget(grids=(grid,)))
        notice_id = create_notice(session, draft).id

    [pushed] = peer.wait_sent(room=room)
    assert "停水通知" in pushed["text"] and "请提前储水" in pushed["text"] and pushed["mentionIdList"] == [], pushed
    deadline = time.monotonic() + 10
    while True:
        with unit_of_work(factory) as session:
            delivery = session.scalar(select(NoticeDelivery).where(NoticeDelivery.notice_id == notice_id))
            if delivery is not None and delivery.status == "sent":
                break
        assert time.monotonic() < deadline, delivery and delivery.status
        time.sleep(0.2)


def test_after_the_peer_restarts_the_channel_reconnects_and_resends_what_failed(
    peer: WechatyPeer, host: ChannelHost, own_db: tuple[str, sessionmaker[Session]]
) -> None:
    factory = own_db[1]
    room = _new_room(peer, [BOT[0], RESIDENT[0]])
    _wechaty_grid(factory, room)
    up_since = host.channel.health().since

    peer.kill()
    host.wait_health(HealthStatus.CONNECTING, timeout=15)
    assert "reconnecting" in host.channel.health().detail or "connecting to" in host.channel.health().detail
    # A reply sent while the peer is down fails, and is kept for a retry.
    reply = OutgoingMessage(TargetType.ROOM, room, "网格员明天上午上门查看。", (Mention(*RESIDENT),))
    host.run(host.services.dispatcher.send([reply], origin="wechaty"))
    with unit_of_work(factory) as session:
        row = session.scalars(select(OutboundMessage).where(OutboundMessage.target_id == room)).one()
        assert row.status == OutboundStatus.PENDING and row.attempts == 1 and "not connected" in (row.last_error or "")

    peer.start()
    statuses = host.wait_health(HealthStatus.UP, timeout=30)
    assert statuses[0] in (HealthStatus.CONNECTING, HealthStatus.DOWN) and statuses[-1] is HealthStatus.UP
    assert host.channel.health().since > up_since

    [resent] = peer.wait_sent(room=room, timeout=40)
    assert resent["text"].endswith("网格员明天上午上门查看。") and resent["mentionIdList"] == [RESIDENT[0]], resent
    row = _wait_row(factory, room, OutboundStatus.SENT)  # marked once the platform took it, just after the peer saw it
    assert row.attempts == 2

    # And the next message is answered.
    other = _new_room(peer, [BOT[0], RESIDENT[0]])
    peer.say(RESIDENT[0], f"@{BOT[1]}\u2005在吗", room=other, mentions=(BOT[0],))
    assert peer.wait_sent(room=other)[0]["mentionIdList"] == [RESIDENT[0]]


def _wait_row(factory: sessionmaker[Session], target: str, status: str, timeout: float = 10) -> OutboundMessage:
    deadline = time.monotonic() + timeout
    while True:
        with unit_of_work(factory) as session:
            row = session.scalars(select(OutboundMessage).where(OutboundMessage.target_id == target)).one()
        if row.status == status or time.monotonic() > deadline:
            assert row.status == status, (row.status, row.last_error)
            return row
        time.sleep(0.1)


def _wait_all_sent(factory: sessionmaker[Session], target: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with unit_of_work(factory) as session:
            rows = session.scalars(select(OutboundMessage).where(OutboundMessage.target_id == target)).all()
        if all(row.status == OutboundStatus.SENT for row in rows) or time.monotonic() > deadline:
            assert all(row.status == OutboundStatus.SENT for row in rows), [(r.status, r.last_error) for r in rows]
            return
        time.sleep(0.1)


def test_the_media_store_keeps_pictures_only_under_names_of_its_own(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media", max_bytes=1024)
    first = store.save_image(_png(), "../../etc/passwd.png")
    assert first.url.startswith("/media/") and first.mime == "image/png" and first.kind is MediaKind.IMAGE
    assert store.save_image(_png(), "again.png").url == first.url  # the same picture is stored once
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == [first.url.rsplit("/", 1)[1]]
    for data in (b"", b"<html><script>alert(1)</script></html>", b"\x89PNG\r\n\x1a\n" + b"0" * 2000):
        with pytest.raises(MediaRejected):
            store.save_image(data, "x.png")
    assert store.path_for("../media/" + first.url.rsplit("/", 1)[1]) is None
    assert store.path_of_url("https://elsewhere.example/media/x.png") is None


def test_only_the_bots_own_mention_is_cut_from_the_text() -> None:
    assert strip_mentions("@网格助手\u2005楼道灯坏了", ["网格助手"]) == "楼道灯坏了"
    assert strip_mentions("@小助手 @网格助手 路灯不亮 @老张\u2005看看", ["网格助手", ""]) == "@小助手 路灯不亮 @老张\u2005看看"
    assert strip_mentions("楼道灯坏了@网格助手", ["网格助手"]) == "楼道灯坏了"


def test_a_half_configured_channel_refuses_to_start(tmp_path: Path) -> None:
    from bot.channels.wechaty import build_channel

    factory = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'x.db'}"))
    assert build_channel(Settings(wechaty_puppet_service_token=""), factory) is None
    for endpoint in ("", "localhost"):
        with pytest.raises(ValueError, match="WECHATY_PUPPET_SERVICE_ENDPOINT"):
            build_channel(Settings(wechaty_puppet_service_token="t", wechaty_puppet_service_endpoint=endpoint), factory)


# --- the foundation slice in a WeChat group, through the trained Rasa server ---------------------------


@pytest.mark.rasa
def test_group_conversation_of_the_foundation_slice(
    peer: WechatyPeer, database_url: str, app_url: str, rasa_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """Report → location question → ticket → private message to the worker → 办结 → the resident told, in WeChat."""
    place = f"{uuid.uuid4().int % 900 + 100}号楼2单元"  # its own: no other test's open ticket is there
    room = _new_room(peer, [BOT[0], RESIDENT[0], NEIGHBOUR[0], WORKER[0]], topic="阳光小区居民群")
    worker = f"wx_worker_{uuid.uuid4().hex[:6]}"
    peer.add_contact(worker, "赵网格员")
    grid = f"wx-grid-{uuid.uuid4().hex[:6]}"
    with unit_of_work(session_factory) as session:
        session.add(Grid(code=grid, name="阳光社区微信网格", community_code="demo-community-1"))
    for args in (
        ["group", "add", room, "--grid", grid, "--name", "阳光小区居民群", "--channel", "wechaty"],
        ["group", "worker", worker, "--channel", "wechaty", "--name", "赵网格员", "--grid", grid],
    ):
        done = _gridbot(database_url, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    with unit_of_work(session_factory) as session:
        assert session.get(ChatGroup, room).channel == "wechaty"  # type: ignore[union-attr]
        assert session.get(Worker, worker).channel == "wechaty"  # type: ignore[union-attr]

    with ChannelHost(_host_settings(database_url, peer, tmp_path, rasa_url)) as host:
        host.wait_health(HealthStatus.UP)
        resident = f"wx_resident_{uuid.uuid4().hex[:6]}"  # fresh: Rasa conversations never carry over
        peer.add_contact(resident, "居民小周")

        peer.say(NEIGHBOUR[0], "今天天气真好啊", room=room)  # chatter: no reply
        peer.say(resident, f"@{BOT[1]}\u2005楼道灯坏了 晚上黑乎乎的", room=room, mentions=(BOT[0],))
        [asked] = peer.wait_sent(room=room, timeout=60)
        assert "哪个位置" in asked["text"] and asked["mentionIdList"] == [resident], asked
        assert t("channels.answer_with_mention") not in asked["text"]  # WeChat hands the bot every group message

        peer.say(resident, place, room=room)  # no @: the bot is waiting for this answer
        filed = peer.wait_sent(room=room, count=2, timeout=60)[1]
        assert filed["mentionIdList"] == [resident], filed
        number = TICKET_NUMBER.search(filed["text"]).group(0)  # type: ignore[union-attr]
        [to_worker] = peer.wait_sent(contact=worker, timeout=30)
        assert number in to_worker["text"] and place in to_worker["text"], to_worker

        peer.send_file(resident, "light.png", _png(), room=room)  # the photo of it, right after
        attached = peer.wait_sent(room=room, count=3)[2]
        assert number in attached["text"] and "照片" in attached["text"], attached

        peer.say(worker, f"办结 {number} 已更换灯泡，恢复照明")  # the worker, in a private chat
        done = peer.wait_sent(contact=worker, count=2, timeout=60)[1]
        assert number in done["text"] and "已办结" in done["text"], done
        told = peer.wait_sent(room=room, count=4, timeout=30)[3]
        assert told["mentionIdList"] == [resident] and "满意" in told["text"], told

        assert not [m for m in peer.sent(room=room) if NEIGHBOUR[0] in m["mentionIdList"]]
        for target in (room, worker, resident):  # every reply went out through the outbound queue and is marked sent
            _wait_all_sent(session_factory, target)
        with unit_of_work(session_factory) as session:
            ticket = session.scalar(select(Ticket).where(Ticket.number == number))
            assert ticket is not None
            assert (ticket.group_id, ticket.grid_code, ticket.reporter_id, ticket.assignee_id) == (room, grid, resident, worker)
            assert ticket.status == "resolved" and ticket.location == place
            assert [e.action for e in ticket.events] == ["submit", "dispatch", "photo", "resolve"]
            assert ticket.events[2].photos and ticket.events[2].photos[0].startswith("/media/")


def _gridbot(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "DATABASE_URL", "NOTICE_", "WECHATY_"))}
    env |= {"DATABASE_URL": database_url, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([GRIDBOT, *args], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=120)
