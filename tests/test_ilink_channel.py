"""The iLink channel (personal WeChat, Tencent's official bot route) against a local peer speaking its HTTP protocol.

The app runs with ILINK_ENABLED and its API base pointing at tests/ilink_peer.py, which plays WeChat's server:
QR codes a (test) WeChat user scans and confirms, long-polled getupdates with an opaque cursor, sendmessage
with WeChat's rules (a context token of the person's, within 24 h of their last message, at most 10 per message of
theirs), a CDN of encrypted pictures. People are bound through the console API, as an admin would.

Without a Rasa server (most tests) a message is held for later and the person is told to wait: that reply is
what these tests watch go out. The `rasa` tests ask a question and make a report through the trained model.
"""

from __future__ import annotations

import base64
import logging
import re
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.channel_cli import group_add
from bot.channels.base import HealthStatus
from bot.channels.ilink import IlinkChannel, IlinkConfig, store
from bot.channels.ilink.store import IlinkBinding, IlinkContact
from bot.channels.outbound import OutboundMessage, OutboundStatus
from bot.channels.sender import SendError
from bot.deferred import HELD, DeferredMessage
from bot.messages import IncomingMessage, OutgoingMessage, TargetType
from bot.privacy import mask_person_id
from bot.settings import Settings
from bot.texts import text as t
from grid.geography import Grid, Worker
from grid.tickets import Ticket
from storage.base import utcnow
from storage.engine import unit_of_work
from tests.accounts import role_headers
from tests.conftest import REDIS_URL
from tests.ilink_peer import IlinkPeer, Person, ilink_peer
from tests.servers import action_call, free_port
from tests.support.channel_hosts import AppHost, app_host, own_database

LOGINS = "/api/v1/channels/ilink/logins"
TICKET_NUMBER = re.compile(r"GD\d{8}-\d{4}")


class IlinkHost(AppHost):
    """The app with the iLink channel, served from a thread whose event loop the test can reach."""

    channel_name = "ilink"

    @property
    def ilink(self) -> IlinkChannel:
        channel = self.channel
        assert isinstance(channel, IlinkChannel)
        return channel

    def polling(self, bot_id: str) -> HealthStatus | None:
        for poller in self.ilink.pollers():
            if poller.binding.bot_id == bot_id:
                return poller.health.status
        return None


def wait_until(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x80\x80" * 2)) + chunk(b"IEND", b"")
    )


# --- the peer, the database and the app ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer() -> Iterator[IlinkPeer]:
    with ilink_peer(hold_seconds=1.0) as running:
        yield running


own_db = own_database("ilink-db")


def ilink_settings(database_url: str, peer: IlinkPeer, folder: Path, rasa_url: str | None = None) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        rasa_url=rasa_url or f"http://127.0.0.1:{free_port()}",  # nothing listens: messages are held, people told to wait
        app_port=free_port(),
        kb_embedding_model="none" if rasa_url is None else "auto",
        ilink_enabled=True,
        ilink_api_base=peer.url,
        ilink_cdn_base=f"{peer.url}/c2c",
        ilink_long_poll_seconds=1.0,
        ilink_retry_first_seconds=0.2,
        ilink_retry_max_seconds=1.0,
        media_dir=folder / "media",
        outbound_retry_seconds=0.5,
        deferred_retry_seconds=3600,  # held messages stay held: each one's row is counted
        notice_sweep_seconds=0.5,
    )


host = app_host(IlinkHost, ilink_settings, wait_up=False)


@pytest.fixture
def admin(own_db: tuple[str, sessionmaker[Session]]) -> dict[str, str]:
    return role_headers(own_db[1], "admin")


def new_user() -> str:
    return f"o{uuid.uuid4().hex[:16]}@im.wechat"


def login_state(
    host: IlinkHost, headers: dict[str, str], login_id: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        response = httpx.get(f"{host.url}{LOGINS}/{login_id}", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        state = response.json()
        return state if ready(state) else None

    return wait_until(read, what=f"login {login_id}")


def bind(host: IlinkHost, peer: IlinkPeer, headers: dict[str, str], user_id: str, grid: str | None = None) -> Person:
    """What an admin and a person do: a QR code from the console, scanned and confirmed in WeChat; polled after."""
    response = httpx.post(f"{host.url}{LOGINS}", headers=headers, json={"grid_code": grid}, timeout=30)
    assert response.status_code == 201, response.text
    code = peer.last_code()
    peer.scan(code, user_id)
    person = peer.confirm(code)
    login_state(host, headers, response.json()["id"], lambda s: s["status"] == "confirmed")
    wait_until(lambda: host.polling(person.bot_id) is HealthStatus.UP, what="the new binding's poll")
    return person


def bound_and_answered(host: IlinkHost, peer: IlinkPeer, headers: dict[str, str], first: str = "你好") -> str:
    """A new person, bound, who wrote `first` and got the bot's answer: a contact the bot may write to."""
    user = new_user()
    bind(host, peer, headers, user)
    peer.say(user, first)
    peer.wait(lambda: peer.sent_to(user), 1)
    return user


def rows_to(factory: sessionmaker[Session], target: str) -> list[OutboundMessage]:
    with factory() as session:
        return list(
            session.scalars(select(OutboundMessage).where(OutboundMessage.target_id == target).order_by(OutboundMessage.id))
        )


def send(host: IlinkHost, target: str, *texts: str) -> list[OutboundMessage]:
    """Messages said to `target` (as a turn or a notice would), once each has gone out or failed for good: the
    dispatcher sends what it can at once and the outbound-retry job the rest, so `send` returning is not the end."""
    factory = host.services.session_factory
    before = max((row.id for row in rows_to(factory, target)), default=0)
    messages = [OutgoingMessage(TargetType.CONTACT, target, text, channel="ilink") for text in texts]
    host.run(host.services.dispatcher.send(messages, origin="ilink"))

    def settled() -> list[OutboundMessage] | None:
        rows = [row for row in rows_to(factory, target) if row.id > before]
        return rows if len(rows) == len(texts) and all(row.status != OutboundStatus.PENDING for row in rows) else None

    return wait_until(settled, what=f"{texts} to settle")


# --- binding by QR code ------------------------------------------------------------------------------------------


def test_a_person_binds_their_wechat_with_the_qr_code_shown_in_the_console(
    peer: IlinkPeer, host: IlinkHost, own_db: tuple[str, sessionmaker[Session]], admin: dict[str, str]
) -> None:
    factory = own_db[1]
    viewer = role_headers(factory, "viewer")
    assert httpx.post(f"{host.url}{LOGINS}", headers=viewer, json={}, timeout=10).status_code == 403
    assert httpx.post(f"{host.url}{LOGINS}", headers=admin, json={"grid_code": "no-such-grid"}, timeout=10).status_code == 422

    started = httpx.post(f"{host.url}{LOGINS}", headers=admin, json={"grid_code": "grid-5"}, timeout=30)
    assert started.status_code == 201, started.text
    login = started.json()
    code = peer.last_code()
    assert login["status"] == "wait" and code in login["qr_url"] and login["codes"] == 1
    assert login["qr_image"].startswith("data:image/svg+xml;base64,")
    assert b"<svg" in base64.b64decode(login["qr_image"].split(",", 1)[1])

    peer.expire_code(code)  # nobody scanned in time: a new code replaces it, as in Tencent's client
    renewed = login_state(host, admin, login["id"], lambda s: s["codes"] == 2)
    code = peer.last_code()
    assert code in renewed["qr_url"] and renewed["qr_url"] != login["qr_url"] and renewed["status"] == "wait"

    user = new_user()
    peer.scan(code, user, number="4071")  # WeChat asks for the number it shows on the phone
    login_state(host, admin, login["id"], lambda s: s["status"] == "need_verifycode")
    verify = f"{host.url}{LOGINS}/{login['id']}/verify"
    assert httpx.post(verify, headers=admin, json={"code": "4071<script>"}, timeout=10).status_code == 422
    assert httpx.post(verify, headers=admin, json={"code": "1234"}, timeout=10).status_code == 200  # mistyped
    wait_until(lambda: peer.logins[code].tried == ["1234"], what="the wrong number to be tried")
    login_state(host, admin, login["id"], lambda s: s["status"] == "need_verifycode" and "did not match" in s["message"])
    assert httpx.post(verify, headers=admin, json={"code": "4071"}, timeout=10).status_code == 200
    login_state(host, admin, login["id"], lambda s: s["status"] == "scaned")
    assert peer.logins[code].tried == ["1234", "4071"]
    person = peer.confirm(code)
    done = login_state(host, admin, login["id"], lambda s: s["status"] == "confirmed")
    assert (done["bot_id"], done["user_id"]) == (person.bot_id, user)

    with factory() as session:
        row = session.get(IlinkBinding, person.bot_id)
        assert row is not None and (row.user_id, row.bot_token, row.grid_code) == (user, person.token, "grid-5")
    wait_until(lambda: host.polling(person.bot_id) is HealthStatus.UP, what="the binding's poll")
    assert (person.bot_id, "notifystart") in peer.notified
    overview = httpx.get(f"{host.url}/api/v1/channels/ilink", headers=viewer, timeout=10).json()
    [shown] = [b for b in overview["bindings"] if b["bot_id"] == person.bot_id]
    # A viewer may not see who the person is (bot/privacy.py): their id is masked.
    assert (shown["user_id"], shown["grid_code"], shown["polling"]) == (mask_person_id(user), "grid-5", "up")
    assert "bot_token" not in str(overview) and person.token not in str(overview)

    # The person writes; the answer carries the context token of their message.
    peer.say(user, "你好")
    [reply] = peer.wait(lambda: peer.sent_to(user))
    assert reply.text == t("router.rasa_down")
    [written] = [m for m in peer.person(user).log if isinstance(m, dict)]
    assert reply.context_token == written["context_token"] and reply.client_id.startswith("gridbot:")
    assert peer.header_errors == []


# --- nothing lost, nothing doubled ------------------------------------------------------------------------------


def test_dropped_polls_a_restarting_platform_and_a_restarted_app_lose_and_double_nothing(
    peer: IlinkPeer, own_db: tuple[str, sessionmaker[Session]], admin: dict[str, str], tmp_path: Path
) -> None:
    url, factory = own_db
    user = new_user()
    settings = ilink_settings(url, peer, tmp_path)
    with IlinkHost(settings) as host:
        person = bind(host, peer, admin, user)
        peer.drop_next_polls(user)  # the long-poll that would carry the first message is cut mid-request
        first = peer.say(user, "楼道灯坏了")
        peer.wait(lambda: peer.sent_to(user), 1)

        peer.stop()  # WeChat's server goes away mid-conversation (held polls cut, connections refused)
        second = peer.say(user, "在3号楼2单元")
        wait_until(lambda: host.polling(person.bot_id) is not HealthStatus.UP, what="the poll to notice")
        peer.start()
        peer.wait(lambda: peer.sent_to(user), 2)
        wait_until(lambda: host.polling(person.bot_id) is HealthStatus.UP, what="the poll to recover")

    polls_before = len(peer.polls)
    third = peer.say(user, "晚上黑乎乎的")  # the app is down while they write
    with IlinkHost(settings.model_copy(update={"app_port": free_port()})) as host:
        peer.wait(lambda: peer.sent_to(user), 3)
        peer.redeliver(user, first)  # WeChat delivers the first message again, later in the stream
        fourth = peer.say(user, "谢谢")
        peer.wait(lambda: peer.sent_to(user), 4)

    # The restarted app resumed from the stored cursor: its first poll of this bot was not from the beginning.
    [resumed, *_] = [p for p in peer.polls[polls_before:] if p["bot_id"] == person.bot_id]
    assert resumed["cursor"] != ""
    assert len(peer.sent_to(user, accepted=None)) == 4  # one answer per message: the redelivery got none
    with factory() as session:
        held = session.scalars(
            select(DeferredMessage.message_id).where(DeferredMessage.sender_id == user, DeferredMessage.status == HELD)
        ).all()
    assert sorted(held) == sorted([first, second, third, fourth])  # each message handled exactly once


# --- the reply window and the cap --------------------------------------------------------------------------------


def test_the_cap_and_the_reply_window_are_kept_and_refused_replies_are_shown_in_the_console(
    peer: IlinkPeer, host: IlinkHost, own_db: tuple[str, sessionmaker[Session]], admin: dict[str, str]
) -> None:
    factory = own_db[1]
    user = bound_and_answered(host, peer, admin, "在吗")  # the answer: 1 of the 10 WeChat takes per message of theirs

    send(host, user, *(f"第{i}条通知" for i in range(2, 12)))
    accepted = peer.sent_to(user)
    assert [s.text.split("\n")[0] for s in accepted[1:]] == [f"第{i}条通知" for i in range(2, 11)]
    assert accepted[-1].text.endswith(t("ilink.last_message_hint"))  # the 10th asks them to write again
    assert not accepted[-2].text.endswith(t("ilink.last_message_hint"))
    assert len(peer.sent_to(user, accepted=None)) == 10  # the 11th never reached WeChat
    refused = rows_to(factory, user)[-1]
    assert refused.text == "第11条通知" and refused.status == OutboundStatus.FAILED
    assert "cap reached" in (refused.last_error or "")

    # The console says what could not go out, and that nothing more can until they write.
    overview = httpx.get(f"{host.url}/api/v1/channels/ilink", headers=admin, timeout=10).json()
    [contact] = [c for c in overview["contacts"] if c["contact_id"] == user]
    assert (contact["sent"], contact["left"]) == (10, 0) and "cap reached" in contact["last_refusal"]
    assert any(r["id"] == refused.id and r["text"] == "第11条通知" and "cap reached" in r["error"] for r in overview["refused"])
    [health] = [c for c in httpx.get(f"{host.url}/api/v1/channels", headers=admin, timeout=10).json() if c["name"] == "ilink"]
    assert health["failed"] >= 1 and health["status"] == "up"

    # Writing again reopens it.
    peer.say(user, "收到")
    peer.wait(lambda: peer.sent_to(user), 11)

    # WeChat closes a window before our count says so (seen after ~15 h): its refusal shuts it until they write.
    peer.age_window(user, 25 * 3600)
    send(host, user, "明天上午停水")
    [platform_refusal] = peer.sent_to(user, accepted=False)
    assert platform_refusal.answer["ret"] == -2
    assert "WeChat refused" in (rows_to(factory, user)[-1].last_error or "")
    send(host, user, "再说一次")
    assert len(peer.sent_to(user, accepted=False)) == 1  # refused here: not tried again at WeChat
    assert "WeChat refused an earlier message" in (rows_to(factory, user)[-1].last_error or "")

    # Our own window: their last message over ILINK_REPLY_WINDOW_HOURS ago.
    peer.say(user, "又来了")
    peer.wait(lambda: peer.sent_to(user), 12)
    with unit_of_work(factory) as session:
        session.execute(
            update(IlinkContact).where(IlinkContact.contact_id == user).values(last_inbound_at=utcnow() - timedelta(hours=23.5))
        )
    tried = len(peer.sent_to(user, accepted=None))
    send(host, user, "过期了")
    assert "reply window closed" in (rows_to(factory, user)[-1].last_error or "")
    assert len(peer.sent_to(user, accepted=None)) == tried


def test_a_rate_limited_send_is_retried_and_a_group_is_never_a_target(
    peer: IlinkPeer, host: IlinkHost, own_db: tuple[str, sessionmaker[Session]], admin: dict[str, str]
) -> None:
    factory = own_db[1]
    user = bound_and_answered(host, peer, admin)
    peer.rate_limited = 1
    send(host, user, "稍后再发的一条")
    [sent] = peer.wait(lambda: [s for s in peer.sent_to(user) if s.text == "稍后再发的一条"])
    [limited] = [s for s in peer.sent_to(user, accepted=False) if s.text == "稍后再发的一条"]
    assert limited.answer == {"ret": -2, "errmsg": "rate limited"} and limited.client_id == sent.client_id
    row = wait_until(
        lambda: next((r for r in rows_to(factory, user) if r.status == OutboundStatus.SENT and r.text == sent.text), None)
    )
    assert row.attempts == 2

    caps = IlinkChannel.capabilities
    assert caps.can_post_to_rooms is False and caps.can_mention is False and caps.can_message_contacts is True
    with pytest.raises(SendError) as refused:
        host.run(host.ilink.say_to_room("some-group", "通知", key=uuid.uuid4().hex))
    assert refused.value.retryable is False
    assert "ilink" not in host.app.state.notices.runtime.senders  # notices to groups never pick it
    with pytest.raises(typer.BadParameter, match="no groups"):
        group_add("some-group", grid="grid-5", name="群", channel="ilink")


def test_a_send_whose_answer_was_lost_is_retried_without_taking_a_second_place(
    peer: IlinkPeer, host: IlinkHost, own_db: tuple[str, sessionmaker[Session]], admin: dict[str, str]
) -> None:
    factory = own_db[1]
    user = bound_and_answered(host, peer, admin)
    peer.lost_answers = 1  # WeChat takes it, and its answer is lost on the way back
    [row] = send(host, user, "答复丢了的一条")
    assert row.status == OutboundStatus.SENT and row.attempts == 2
    tries = [s for s in peer.sent_to(user) if s.text == "答复丢了的一条"]
    assert len(tries) == 2 and len({s.client_id for s in tries}) == 1  # the retry carries the same client_id
    with factory() as session:
        contact = session.get(IlinkContact, user)
        assert contact is not None and contact.sent == 2  # the answer and this one: not 3 of the 10


def test_a_contact_whose_binding_is_gone_is_refused_without_using_their_allowance(
    own_db: tuple[str, sessionmaker[Session]],
) -> None:
    factory = own_db[1]
    user = new_user()
    with unit_of_work(factory) as session:
        session.add(IlinkContact(contact_id=user, bot_id="gone@im.bot", last_inbound_at=utcnow(), sent=3))
    with pytest.raises(store.Refused, match="is gone"), unit_of_work(factory) as session:
        try:
            store.take(session, user, timedelta(hours=24), 10)
        finally:
            session.commit()  # as the channel does: the refusal is recorded for the console
    with factory() as session:
        contact = session.get(IlinkContact, user)
        assert contact is not None and contact.sent == 3 and "is gone" in (contact.last_refusal or "")


def test_the_console_overview_masks_people_and_refused_text_for_a_viewer(
    peer: IlinkPeer, host: IlinkHost, own_db: tuple[str, sessionmaker[Session]], admin: dict[str, str]
) -> None:
    factory = own_db[1]
    user = bound_and_answered(host, peer, admin)  # a contact from their first message on
    stranger = new_user()  # never wrote to the bot: what is said to them is refused and listed
    [refused] = send(host, stranger, "请回电13812345678，3号楼2单元301室")
    assert refused.status == OutboundStatus.FAILED

    def overview(headers: dict[str, str]) -> dict[str, Any]:
        response = httpx.get(f"{host.url}/api/v1/channels/ilink", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    full = overview(admin)
    assert user in {c["contact_id"] for c in full["contacts"]} and user in {b["user_id"] for b in full["bindings"]}
    [shown] = [r for r in full["refused"] if r["id"] == refused.id]
    assert (shown["target_id"], shown["text"]) == (stranger, "请回电13812345678，3号楼2单元301室")

    seen = overview(role_headers(factory, "viewer"))
    everything = str(seen)
    assert user not in everything and stranger not in everything  # nor in the poll's health detail
    assert mask_person_id(user) in {c["contact_id"] for c in seen["contacts"]}
    assert mask_person_id(user) in {b["user_id"] for b in seen["bindings"]}
    [masked] = [r for r in seen["refused"] if r["id"] == refused.id]
    assert masked["target_id"] == mask_person_id(stranger)
    assert masked["text"] == "请回电138****5678，3号楼2单元***室"


# --- malformed answers and messages -------------------------------------------------------------------------------


def test_malformed_answers_and_messages_are_logged_and_skipped_and_polling_goes_on(
    peer: IlinkPeer, host: IlinkHost, admin: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    user = new_user()
    person = bind(host, peer, admin, user)
    caplog.set_level(logging.INFO, logger="bot.channels.ilink")
    peer.garble_next_polls(
        user, b"<html>502 Bad Gateway</html>", b"[1, 2]", b'{"ret": 0, "msgs": "none"}', b'{"ret": 0, "get_updates_buf": 7}'
    )
    peer.say_raw(user, "just a string")
    peer.say_raw(user, {"message_type": 1, "from_user_id": user, "item_list": "not a list", "message_id": 1})
    peer.say_raw(user, {"message_type": 1, "item_list": [{"type": 1, "text_item": {"text": "谁说的"}}], "message_id": 2})
    peer.say_raw(
        user, {"message_type": 2, "from_user_id": person.bot_id, "item_list": [{"type": 1, "text_item": {"text": "回声"}}]}
    )
    peer.say(user, "正常的一条")
    [reply] = peer.wait(lambda: peer.sent_to(user))
    assert reply.text == t("router.rasa_down")

    peer.say(user, "再来一条")  # the poll goes on, and nothing more was answered in between
    assert len(peer.wait(lambda: peer.sent_to(user), 2)) == 2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("malformed message skipped" in m for m in messages) == 3, messages
    assert sum("poll failed" in m for m in messages) >= 4, messages
    assert any("the bot's own message" in m for m in messages)
    assert host.polling(person.bot_id) is HealthStatus.UP


def test_a_picture_and_a_voice_note_reach_the_bot(
    peer: IlinkPeer, host: IlinkHost, own_db: tuple[str, sessionmaker[Session]], admin: dict[str, str]
) -> None:
    factory = own_db[1]
    user = new_user()
    bind(host, peer, admin, user, grid="grid-5")
    picture = _png()
    peer.send_picture(user, picture)  # no ticket of theirs yet: the private-chat hint
    [hint] = peer.wait(lambda: peer.sent_to(user))
    assert hint.text == t("photos.no_ticket")
    [stored] = list((host.settings.media_dir).glob("*.png"))
    assert stored.read_bytes() == picture  # downloaded from the CDN and decrypted
    assert httpx.get(f"{host.url}/media/{stored.name}", timeout=10).content == picture

    voice = peer.say_voice(user, "楼下的路灯不亮了")
    peer.wait(lambda: peer.sent_to(user), 2)

    def rows() -> list[DeferredMessage]:  # the arrival note (settled once handled) and the message held for Rasa
        with factory() as session:
            return list(session.scalars(select(DeferredMessage).where(DeferredMessage.message_id == voice)))

    [row] = wait_until(lambda: [r for r in rows() if r.status == HELD] if len(rows()) == 1 else None, what="the note settled")
    assert row.text == "楼下的路灯不亮了"  # WeChat's transcription is what the bot reads


def test_settings_the_platform_would_refuse_stop_start_up() -> None:
    assert IlinkConfig.from_settings(Settings(ilink_enabled=False)) is None
    with pytest.raises(ValueError, match="ILINK_REPLY_WINDOW_HOURS"):
        IlinkConfig.from_settings(Settings(ilink_enabled=True, ilink_reply_window_hours=30))
    with pytest.raises(ValueError, match="ILINK_MESSAGES_PER_INBOUND"):
        IlinkConfig.from_settings(Settings(ilink_enabled=True, ilink_messages_per_inbound=11))
    with pytest.raises(ValueError, match="ILINK_API_BASE"):
        IlinkConfig.from_settings(Settings(ilink_enabled=True, ilink_api_base="ilinkai.weixin.qq.com"))


# --- a private report, as Rasa calls the actions --------------------------------------------------------------------


def _private_submit(webhook: httpx.Client, sender: str, grid: str | None) -> list[dict[str, Any]]:
    """action_submit_ticket for a report made in a private chat, the router's metadata as it sends it for iLink."""
    metadata = {"channel": "ilink", "group_id": None, "grid_code": grid, "sender_id": sender, "sender_name": "微信用户"}
    latest = {"text": "楼道灯坏了", "intent": {"name": "report_issue", "confidence": 0.95}, "entities": [], "metadata": metadata}
    body = action_call("action_submit_ticket", f"ilink:private:{sender}", latest)
    body["tracker"]["slots"] = {"issue_description": "楼道灯坏了", "location": "7号楼2单元"}
    response = webhook.post("/webhook", json=body)
    assert response.status_code == 200, response.text
    return list(response.json()["responses"])


def test_a_private_report_is_filed_in_the_persons_grid_and_without_one_goes_to_a_group(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    with_grid, without = new_user(), new_user()
    responses = _private_submit(webhook, with_grid, "grid-1")
    [reply] = [r["text"] for r in responses if r.get("text")]
    with session_factory() as session:
        ticket = session.scalars(select(Ticket).where(Ticket.reporter_id == with_grid)).one()
    assert (ticket.grid_code, ticket.group_id, ticket.location, ticket.assignee_id) == ("grid-1", None, "7号楼2单元", "worker-1")
    assert ticket.number in reply
    delivered = [d for r in responses if r.get("custom") for d in r["custom"].get("deliver", [])]
    assert any(d["target_id"] == "worker-1" and ticket.number in d["text"] for d in delivered)  # the worker's notice

    [asked] = [r["text"] for r in _private_submit(webhook, without, None) if r.get("text")]
    assert asked == t("tickets.not_a_group")
    with session_factory() as session:
        assert session.scalars(select(Ticket).where(Ticket.reporter_id == without)).all() == []


def test_a_private_question_nobody_can_answer_goes_to_the_worker_of_the_persons_grid(
    webhook: httpx.Client, session_factory: sessionmaker[Session]
) -> None:
    """A 咨询 hand-off in private chat files a ticket in the person's grid, like a report, and names who answers."""
    sender = new_user()
    metadata = {"channel": "ilink", "group_id": None, "grid_code": "grid-1", "sender_id": sender, "sender_name": "微信用户"}
    question = "我家楼上邻居的狗每天早上五点叫，能不能请网格员帮忙协调一下"
    latest = {"text": question, "intent": {"name": "ask_policy", "confidence": 0.9}, "entities": [], "metadata": metadata}
    response = webhook.post("/webhook", json=action_call("action_answer_policy", f"ilink:private:{sender}", latest))
    assert response.status_code == 200, response.text
    responses = response.json()["responses"]
    with session_factory() as session:
        ticket = session.scalars(select(Ticket).where(Ticket.reporter_id == sender)).one()
    filed = (ticket.grid_code, ticket.group_id, ticket.reporter_channel, ticket.assignee_id)
    assert filed == ("grid-1", None, "ilink", "worker-1")
    [reply] = [r["text"] for r in responses if r.get("text")]
    assert ticket.number in reply
    delivered = [d for r in responses if r.get("custom") for d in r["custom"].get("deliver", [])]
    assert any(d["target_id"] == "worker-1" and ticket.number in d["text"] for d in delivered)


# --- through the trained Rasa server ------------------------------------------------------------------------------


def _ilink_grid(factory: sessionmaker[Session], grid_name: str, worker_name: str) -> tuple[str, str, str]:
    """(grid, worker, resident): a grid of its own in demo-community-1 whose worker is reached on iLink."""
    grid = f"ilink-grid-{uuid.uuid4().hex[:6]}"
    worker, resident = new_user(), new_user()
    with unit_of_work(factory) as session:
        session.add(Grid(code=grid, name=grid_name, community_code="demo-community-1"))
        session.flush()
        session.add(Worker(id=worker, name=worker_name, grid_code=grid, channel="ilink"))
    return grid, worker, resident


@pytest.mark.rasa
def test_a_private_question_is_answered_and_a_report_files_a_ticket_for_the_worker_on_wechat(
    peer: IlinkPeer, database_url: str, app_url: str, rasa_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """`app_url` serves Rasa's actions; this app, on the same database, holds the iLink channel."""
    grid, worker, resident = _ilink_grid(session_factory, "个人微信测试网格", "钱网格员")
    admin = role_headers(session_factory, "admin")
    with IlinkHost(ilink_settings(database_url, peer, tmp_path, rasa_url)) as host:
        bind(host, peer, admin, worker)
        bind(host, peer, admin, resident, grid=grid)

        peer.say(resident, "社区的高龄补贴怎么申请")
        [answer] = peer.wait(lambda: peer.sent_to(resident), timeout=60)
        assert "高龄" in answer.text and "来源：" in answer.text

        # The worker has not written to the bot: WeChat would not take a notice, so none is tried.
        peer.say(resident, "小区门口的路灯坏了，晚上很黑")
        asked = peer.wait(lambda: peer.sent_to(resident), 2, timeout=60)[1]
        assert "位置" in asked.text, asked.text
        peer.say(resident, "3号楼门口")
        filed = peer.wait(lambda: peer.sent_to(resident), 3, timeout=60)[2]
        found = TICKET_NUMBER.search(filed.text)
        assert found, filed.text
        with session_factory() as session:
            ticket = session.scalars(select(Ticket).where(Ticket.reporter_id == resident)).one()
            assert ticket.number == found.group(0)
            assert (ticket.grid_code, ticket.assignee_id, ticket.group_id, ticket.location) == (grid, worker, None, "3号楼门口")
        notice = wait_until(
            lambda: next((r for r in rows_to(session_factory, worker) if r.status == OutboundStatus.FAILED), None)
        )
        assert ticket.number in notice.text and "never wrote" in (notice.last_error or "")
        assert peer.sent_to(worker, accepted=None) == []
        refused = httpx.get(f"{host.url}/api/v1/channels/ilink", headers=admin, timeout=10).json()["refused"]
        assert any(r["target_id"] == worker and ticket.number in r["text"] for r in refused)
        board = httpx.get(f"{host.url}/api/v1/tickets", headers=admin, params={"assignee": worker}, timeout=10).json()
        assert ticket.number in str(board)  # the ticket reaches the worker through the console all the same

        # Once the worker has written, their next ticket's notice goes out on WeChat.
        peer.say(worker, "早上好")
        peer.wait(lambda: peer.sent_to(worker), 1, timeout=60)
        peer.say(resident, "5号楼电梯里的灯不亮")
        peer.wait(lambda: peer.sent_to(resident), 4, timeout=60)
        peer.say(resident, "5号楼电梯")
        peer.wait(lambda: peer.sent_to(resident), 5, timeout=60)
        [second] = peer.wait(lambda: [s for s in peer.sent_to(worker) if "5号楼" in s.text], timeout=30)
        assert "GD" in second.text


def test_a_private_report_held_while_rasa_is_down_keeps_its_grid(
    peer: IlinkPeer, host: IlinkHost, own_db: tuple[str, sessionmaker[Session]], admin: dict[str, str]
) -> None:
    """Held, the message still names the binding's grid: replayed, it is filed there, not refused as groupless."""
    user = new_user()
    bind(host, peer, admin, user, grid="grid-2")
    sent = peer.say(user, "楼道灯坏了")
    peer.wait(lambda: [s for s in peer.sent_to(user) if s.text == t("router.rasa_down")])

    def held() -> list[DeferredMessage] | None:  # the arrival note is settled once the turn (which held it) ends
        with own_db[1]() as session:
            rows = session.scalars(select(DeferredMessage).where(DeferredMessage.message_id == sent)).all()
        return list(rows) if [r.status for r in rows] == [HELD] else None

    [row] = wait_until(held, what="the arrival note to settle, the held row to stay")
    assert (row.status, row.group_id, row.grid_code) == (HELD, None, "grid-2")
    assert row.as_message().grid_code == "grid-2"


@pytest.mark.rasa
def test_a_private_reporter_is_told_privately_of_the_outcome_and_rates_even_after_a_held_answer(
    peer: IlinkPeer, database_url: str, app_url: str, rasa_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """No group to be told in: the resolve notice and the rating request come privately on WeChat, and 满意 closes."""
    grid, worker, resident = _ilink_grid(session_factory, "个人微信回访网格", "孙网格员")
    admin = role_headers(session_factory, "admin")
    with IlinkHost(ilink_settings(database_url, peer, tmp_path, rasa_url)) as host:
        bind(host, peer, admin, worker)
        bind(host, peer, admin, resident, grid=grid)
        peer.say(worker, "早上好")  # the worker has written: notices to them may go out
        peer.wait(lambda: peer.sent_to(worker), 1, timeout=60)

        peer.say(resident, "小区门口的路灯坏了，晚上很黑")
        asked = peer.wait(lambda: peer.sent_to(resident), 1, timeout=60)[0]
        assert "位置" in asked.text, asked.text
        # The answer is held (Rasa was down when it came) and replayed later: it still files in the binding's grid.
        answer = IncomingMessage(
            channel="ilink", sender_id=resident, sender_name="微信用户", text="3号楼门口",
            message_id=uuid.uuid4().hex, grid_code=grid,
        )  # fmt: skip
        store = host.services.router.deferred
        row_id = store.hold(answer, "rasa unavailable")
        [replayed] = [m for i, m in store.held(limit=10_000) if i == row_id]
        outgoing = host.run(host.services.router.handle(replayed), timeout=60)
        store.finish(row_id)
        host.run(host.services.dispatcher.send(outgoing, origin="ilink"), timeout=60)
        filed = peer.wait(lambda: peer.sent_to(resident), 2, timeout=60)[1]
        found = TICKET_NUMBER.search(filed.text)
        assert found and filed.text != t("tickets.not_a_group"), filed.text
        number = found.group(0)
        with session_factory() as session:
            ticket = session.scalars(select(Ticket).where(Ticket.number == number)).one()
            assert (ticket.grid_code, ticket.group_id, ticket.reporter_channel) == (grid, None, "ilink")
        peer.wait(lambda: [s for s in peer.sent_to(worker) if number in s.text], timeout=30)

        peer.say(worker, f"接单 {number}")
        peer.wait(lambda: [s for s in peer.sent_to(worker) if "已接单" in s.text], timeout=60)
        peer.say(worker, f"办结 {number} 路灯已更换")
        ack = t("tickets.worker_resolved_ack", number=number)
        peer.wait(lambda: [s for s in peer.sent_to(worker) if s.text == ack], timeout=60)
        asked_rating = peer.wait(lambda: peer.sent_to(resident), 3, timeout=60)[2]
        assert asked_rating.text == t("tickets.resident_resolved", number=number, result="路灯已更换")

        peer.say(resident, "满意")
        rated = peer.wait(lambda: peer.sent_to(resident), 4, timeout=60)[3]
        assert rated.text == t("tickets.rated_closed", rating="满意", number=number), rated.text
        with session_factory() as session:
            closed = session.scalars(select(Ticket).where(Ticket.number == number)).one()
            assert (closed.status, closed.rating) == ("closed", "满意")
