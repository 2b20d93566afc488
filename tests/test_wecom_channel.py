"""The WeCom channel against real encrypted callbacks over HTTP and a local stand-in for WeCom's API.

Callbacks are built here with WeCom's published algorithm, written with `cryptography` (the app decrypts
with wechatpy, so each implementation checks the other): AES-256-CBC, key = base64(EncodingAESKey + "="),
IV = key[:16], plaintext = 16 random bytes + 4-byte big-endian length + message + receive id, PKCS#7
padding to 32-byte blocks; msg_signature = SHA1 of the sorted token, timestamp, nonce and ciphertext.
They go to the live app (uvicorn) at /channels/wecom/callback; what the app sends back goes to
tests/wecom_peer.py, which answers like qyapi.weixin.qq.com and records every request.

Without a Rasa server (most tests) a private message is held for later and the resident is told to wait:
that answer, sent through the app API, is what these tests watch. The `rasa` test answers a policy question.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app_process import app_process, start_app, stop, wait_healthy
from bot.channels.outbound import OutboundMessage, OutboundStatus
from bot.channels.wecom.channel import MAX_TEXT_BYTES, WeComChannel
from bot.channels.wecom.config import WeComConfig
from bot.channels.wecom.security import CallbackUnavailable
from bot.deferred import DONE, HELD, RECEIVED, DeferredMessage
from bot.settings import Settings
from bot.texts import text as t
from grid.geography import ChatGroup
from grid.notices import NoticeTarget
from storage.engine import make_engine, make_session_factory, unit_of_work
from tests.conftest import REDIS_URL
from tests.notice_world import engine_for, new_notice, notice_database
from tests.servers import FakeRasa, app_server, free_port
from tests.wecom_peer import Recorded, WeComPeer, wecom_peer

CORP_ID = "ww5f3c1b2a0d9e8f7a"
AGENT_ID = 1000002
SECRET = "app-secret-for-tests"
TOKEN = "CallbackToken123"
AES_KEY = base64.b64encode(b"GridBot WeCom test key, 32 bytes").decode().rstrip("=")
ROBOT_GROUP = "wrkSFfCgAAtestrobotgroup"
ROBOT_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
APPCHAT_GROUP = "wecom-appchat-1"
ROBOT_TAG = "企微机器人群"
APPCHAT_TAG = "企微应用群"
# Pushes to a robot: 3 per 2 s here instead of 20 per minute, so pacing shows in seconds.
FAST_LIMITS = {"wecom": {"per_group": 3, "window_seconds": 2, "per_account": None, "jitter_seconds": 0}}


# --- WeCom's side of the callback protocol, independent of the app's code --------------------------------


def encrypt(message: str, receive_id: str = CORP_ID, aes_key: str = AES_KEY) -> str:
    key = base64.b64decode(aes_key + "=")
    body = message.encode()
    plain = os.urandom(16) + struct.pack(">I", len(body)) + body + receive_id.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def sign(timestamp: str, nonce: str, encrypted: str, token: str = TOKEN) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()


def app_message(sender: str, content: str, msg_id: str, msg_type: str = "text") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId><AgentID>{AGENT_ID}</AgentID></xml>"
    )


def robot_message(chat_id: str, sender: str, name: str, content: str, msg_id: str) -> str:
    """What a group robot's receive-message callback carries when a member @-mentions it."""
    return (
        f"<xml><WebhookUrl><![CDATA[https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={ROBOT_KEY}]]></WebhookUrl>"
        f"<From><UserId><![CDATA[{sender}]]></UserId><Name><![CDATA[{name}]]></Name></From>"
        f"<ChatId><![CDATA[{chat_id}]]></ChatId><ChatType>group</ChatType><MsgId>{msg_id}</MsgId>"
        f"<MsgType>text</MsgType><Text><Content><![CDATA[@网格助手 {content}]]></Content></Text></xml>"
    )


def envelope(encrypted: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
        f"<AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>"
    )


def signed_post(
    encrypted: str, *, timestamp: int | None = None, nonce: str | None = None, body: str | None = None
) -> tuple[dict[str, str], str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    nonce = nonce or uuid.uuid4().hex[:10]
    params = {"msg_signature": sign(ts, nonce, encrypted), "timestamp": ts, "nonce": nonce}
    return params, body if body is not None else envelope(encrypted)


def new_id() -> str:
    return str(int(time.time() * 1000)) + str(uuid.uuid4().int % 10_000)


def wait_for(found: Callable[[], list[Recorded]], count: int = 1, timeout: float = 20.0) -> list[Recorded]:
    deadline = time.monotonic() + timeout
    while True:
        result = found()
        if len(result) >= count or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


# --- the app and its WeCom ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer() -> Iterator[WeComPeer]:
    with wecom_peer(CORP_ID, SECRET) as running:
        running.robot_keys.add(ROBOT_KEY)
        yield running


def wecom_settings(peer: WeComPeer) -> dict[str, Any]:
    return wecom_settings_for(peer.url)


def wecom_settings_for(api_base: str) -> dict[str, Any]:
    return {
        "wecom_corp_id": CORP_ID,
        "wecom_agent_id": AGENT_ID,
        "wecom_secret": SECRET,
        "wecom_token": TOKEN,
        "wecom_encoding_aes_key": AES_KEY,
        "wecom_api_base": api_base,
        "wecom_robots": json.dumps({ROBOT_GROUP: ROBOT_KEY}),
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, sessionmaker[Session]]]:
    """The demo map plus two WeCom groups: one with a robot, one app group chat."""
    with notice_database(request.param, tmp_path_factory.mktemp("wecom")) as url:
        engine, factory = engine_for(url)
        with unit_of_work(factory) as session:
            session.add(ChatGroup(id=ROBOT_GROUP, name="企微居民群", grid_code="grid-5", channel="wecom", tags=[ROBOT_TAG]))
            session.add(ChatGroup(id=APPCHAT_GROUP, name="企微应用群聊", grid_code="grid-5", channel="wecom", tags=[APPCHAT_TAG]))
        yield url, factory
        engine.dispose()


@pytest.fixture(scope="module")
def app(world: tuple[str, sessionmaker[Session]], peer: WeComPeer) -> Iterator[httpx.Client]:
    """The live app with WeCom configured; Rasa is not running, so messages are held and residents told to wait."""
    url, _ = world
    settings = Settings(
        database_url=url,
        redis_url=REDIS_URL,
        rasa_url=f"http://127.0.0.1:{free_port()}",
        app_port=free_port(),
        kb_embedding_model="none",
        notice_sweep_seconds=0.3,
        notice_rate_limits=json.dumps(FAST_LIMITS),
        notice_retry_first_seconds=0.5,
        deferred_retry_seconds=3600,
        **wecom_settings(peer),
    )
    with app_server(settings) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def post(client: httpx.Client, params: dict[str, str], body: str | bytes) -> httpx.Response:
    return client.post("/channels/wecom/callback", params=params, content=body, headers={"Content-Type": "text/xml"})


def sends_to(peer: WeComPeer, user: str, *, ok: bool | None = True) -> Callable[[], list[Recorded]]:
    return lambda: [r for r in peer.sent("/cgi-bin/message/send", ok=ok) if r.body.get("touser") == user]


def rows_of(factory: sessionmaker[Session], msg_id: str) -> list[DeferredMessage]:
    """Every deferred_messages row of a message: held for Rasa, noted on arrival, or replayed (done)."""
    with factory() as session:
        return list(session.scalars(select(DeferredMessage).where(DeferredMessage.message_id == msg_id)))


def held(factory: sessionmaker[Session], msg_id: str) -> list[DeferredMessage]:
    return [row for row in rows_of(factory, msg_id) if row.status == HELD]


def outbound_to(factory: sessionmaker[Session], user: str) -> list[str]:
    """The status of every part queued for `user`, in order."""
    with factory() as session:
        query = select(OutboundMessage.status).where(OutboundMessage.target_id == user).order_by(OutboundMessage.id)
        return list(session.scalars(query))


def wait_settled(factory: sessionmaker[Session], msg_id: str, user: str, timeout: float = 20.0) -> None:
    """Until every delivery of `msg_id` the app took has been through the intake and nothing to `user` is pending.

    A note taken on arrival is settled only after its turn, and the parts the turn queued, are done; a part leaves
    pending once sent or given up. From then on nothing more goes out for the message, so a count taken after this
    is final — where a fixed sleep would let a bug slower than the sleep pass.
    """
    deadline = time.monotonic() + timeout
    while RECEIVED in [row.status for row in rows_of(factory, msg_id)] or OutboundStatus.PENDING in outbound_to(factory, user):
        assert time.monotonic() < deadline, f"message {msg_id} still being handled after {timeout} s"
        time.sleep(0.05)


# --- callbacks in -------------------------------------------------------------------------------------


def test_the_console_url_check_gets_the_decrypted_echostr(app: httpx.Client) -> None:
    echo = f"echo-{uuid.uuid4().hex}"
    encrypted = encrypt(echo)
    params, _ = signed_post(encrypted)
    response = app.get("/channels/wecom/callback", params=params | {"echostr": encrypted})
    assert response.status_code == 200 and response.text == echo

    params["msg_signature"] = sign(params["timestamp"], params["nonce"], encrypted, token="another-token")
    refused = app.get("/channels/wecom/callback", params=params | {"echostr": encrypted})
    assert refused.status_code == 403 and "msg_signature" in refused.text


def test_a_private_message_is_acknowledged_at_once_and_answered_through_the_app_api(
    app: httpx.Client, peer: WeComPeer, world: tuple[str, sessionmaker[Session]]
) -> None:
    _, factory = world
    user, msg_id = f"zhangsan{uuid.uuid4().hex[:6]}", new_id()
    params, body = signed_post(encrypt(app_message(user, "楼下路灯坏了", msg_id)))
    started = time.monotonic()
    response = post(app, params, body)
    assert response.status_code == 200 and response.text == ""
    assert time.monotonic() - started < 2.0  # well inside WeCom's 5 s, whatever the bot does next

    [sent] = wait_for(sends_to(peer, user))
    assert sent.body["msgtype"] == "text" and sent.body["agentid"] == AGENT_ID
    assert sent.body["text"]["content"] == t("router.rasa_down")
    assert sent.query["access_token"] in peer.valid_tokens
    # Rasa is down: the message is held for the deferred job, not lost; the note taken on arrival is settled.
    [row] = held(factory, msg_id)
    assert (row.channel, row.sender_id, row.text, row.group_id) == ("wecom", user, "楼下路灯坏了", None)
    deadline = time.monotonic() + 10
    while [row.status for row in rows_of(factory, msg_id)] != [HELD] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [row.status for row in rows_of(factory, msg_id)] == [HELD]


def test_the_same_msgid_delivered_twice_is_handled_once(
    app: httpx.Client, peer: WeComPeer, world: tuple[str, sessionmaker[Session]]
) -> None:
    _, factory = world
    user, msg_id = f"lisi{uuid.uuid4().hex[:6]}", new_id()
    for _ in range(2):  # WeCom's retry: same message, a new nonce and signature
        params, body = signed_post(encrypt(app_message(user, "怎么样了", msg_id)))
        assert post(app, params, body).status_code == 200
    wait_settled(factory, msg_id, user)  # both deliveries through the intake, their answers out
    assert len(sends_to(peer, user)()) == 1
    assert len(held(factory, msg_id)) == 1

    # The same words again as a new message (a new MsgId) are a new message.
    params, body = signed_post(encrypt(app_message(user, "怎么样了", new_id())))
    assert post(app, params, body).status_code == 200
    assert len(wait_for(sends_to(peer, user), count=2)) == 2


def test_a_robot_group_message_is_answered_in_the_group_with_a_real_mention(
    app: httpx.Client, peer: WeComPeer, world: tuple[str, sessionmaker[Session]]
) -> None:
    _, factory = world
    user, msg_id = f"wangwu{uuid.uuid4().hex[:6]}", new_id()
    params, body = signed_post(encrypt(robot_message(ROBOT_GROUP, user, "王五", "小区门口垃圾没人收", msg_id)))
    assert post(app, params, body).status_code == 200
    mine = lambda: [r for r in peer.sent("/cgi-bin/webhook/send", ok=True) if user in r.body["text"].get("mentioned_list", [])]  # noqa: E731
    [sent] = wait_for(mine)
    assert sent.query["key"] == ROBOT_KEY
    assert sent.body == {"msgtype": "text", "text": {"content": t("router.rasa_down"), "mentioned_list": [user]}}
    [row] = held(factory, msg_id)
    assert (row.group_id, row.sender_name, row.text, row.mentions_bot) == (ROBOT_GROUP, "王五", "小区门口垃圾没人收", True)


def test_an_invalid_signature_is_refused(
    app: httpx.Client, peer: WeComPeer, world: tuple[str, sessionmaker[Session]]
) -> None:
    _, factory = world
    user = f"mallory{uuid.uuid4().hex[:6]}"
    encrypted = encrypt(app_message(user, "伪造的消息", new_id()))
    params, body = signed_post(encrypted)
    params["msg_signature"] = sign(params["timestamp"], params["nonce"], encrypted, token="guessed-token")
    response = post(app, params, body)
    assert response.status_code == 403 and "invalid msg_signature" in response.text
    # A genuine message sent after it, answered: the app has worked past the forged one.
    later, later_id = f"honest{uuid.uuid4().hex[:6]}", new_id()
    params, body = signed_post(encrypt(app_message(later, "真的消息", later_id)))
    assert post(app, params, body).status_code == 200
    wait_for(sends_to(peer, later))
    wait_settled(factory, later_id, later)
    assert sends_to(peer, user, ok=None)() == []


def test_a_stale_timestamp_is_refused(app: httpx.Client, peer: WeComPeer) -> None:
    user = f"late{uuid.uuid4().hex[:6]}"
    params, body = signed_post(encrypt(app_message(user, "旧消息", new_id())), timestamp=int(time.time()) - 3600)
    response = post(app, params, body)
    assert response.status_code == 403 and "replay window" in response.text
    future, body = signed_post(encrypt(app_message(user, "未来的消息", new_id())), timestamp=int(time.time()) + 3600)
    assert post(app, future, body).status_code == 403


def test_a_replayed_request_is_refused(
    app: httpx.Client, peer: WeComPeer, world: tuple[str, sessionmaker[Session]]
) -> None:
    _, factory = world
    user, msg_id = f"replay{uuid.uuid4().hex[:6]}", new_id()
    params, body = signed_post(encrypt(app_message(user, "第一次", msg_id)))
    assert post(app, params, body).status_code == 200
    again = post(app, params, body)
    assert again.status_code == 403 and "replayed" in again.text
    wait_for(sends_to(peer, user))
    wait_settled(factory, msg_id, user)
    assert len(sends_to(peer, user)()) == 1


def _wrong_key() -> str:
    return base64.b64encode(b"not the key of this app, 32 byte").decode().rstrip("=")


@pytest.mark.parametrize(
    "case",
    ["not xml", "no encrypt", "bad base64", "wrong key", "other corp", "plaintext not xml", "no sender", "no query"],
)
def test_unreadable_bodies_are_400_never_500(app: httpx.Client, peer: WeComPeer, case: str) -> None:
    valid = app_message("someone", "你好", new_id())
    encrypted = {
        "bad base64": "!!!not-base64###",
        "wrong key": encrypt(valid, aes_key=_wrong_key()),
        "other corp": encrypt(valid, receive_id="ww-another-corp"),
        "plaintext not xml": encrypt("just words, no xml"),
        "no sender": encrypt("<xml><MsgType>text</MsgType><Content>hi</Content><MsgId>1</MsgId></xml>"),
    }.get(case, encrypt(valid))
    params, body = signed_post(encrypted)
    if case == "not xml":
        body = "{this is: not xml"
    elif case == "no encrypt":
        params, body = signed_post("", body="<xml><ToUserName>x</ToUserName></xml>")
    elif case == "no query":
        params = {}
    response = post(app, params, body)
    assert response.status_code == 400, (case, response.status_code, response.text)
    assert "malformed" in response.text or "missing" in response.text


def test_an_expired_access_token_is_refreshed_and_the_message_still_goes_out(app: httpx.Client, peer: WeComPeer) -> None:
    warm = f"warm{uuid.uuid4().hex[:6]}"
    params, body = signed_post(encrypt(app_message(warm, "在吗", new_id())))
    assert post(app, params, body).status_code == 200
    wait_for(sends_to(peer, warm))
    tokens_before = len(peer.sent("/cgi-bin/gettoken"))

    peer.expire_tokens()  # WeCom's token ran out (2 hours) before our cache thought so
    user = f"after{uuid.uuid4().hex[:6]}"
    params, body = signed_post(encrypt(app_message(user, "还在吗", new_id())))
    assert post(app, params, body).status_code == 200
    [sent] = wait_for(sends_to(peer, user))
    [refused] = sends_to(peer, user, ok=False)()
    assert refused.answer["errcode"] == 42001 and refused.at < sent.at
    assert len(peer.sent("/cgi-bin/gettoken")) == tokens_before + 1
    assert sent.query["access_token"] != refused.query["access_token"]


def test_with_the_database_down_a_message_is_refused_for_wecom_to_send_again(peer: WeComPeer) -> None:
    """Nothing can be noted, so nothing is acknowledged: WeCom retries (503), and its retry is no replay."""
    dead = make_engine(f"postgresql+psycopg://127.0.0.1:{free_port()}/gone")
    settings = Settings(database_url=str(dead.url), redis_url=REDIS_URL, **wecom_settings(peer))
    config = WeComConfig.from_settings(settings)
    assert config is not None
    channel = WeComChannel(config, make_session_factory(dead), redis_url=REDIS_URL, namespace=f"t{uuid.uuid4().hex[:6]}")
    seen: list[object] = []

    class Intake:
        async def receive(self, message: object) -> list[object]:
            seen.append(message)
            return []

    async def deliver_twice() -> list[str]:
        await channel.start(Intake())
        try:
            params, body = signed_post(encrypt(app_message(f"down{uuid.uuid4().hex[:6]}", "停电了", new_id())))
            refusals = []
            for _ in range(2):  # WeCom's retry of the same request is taken as a retry, not refused as a replay
                with pytest.raises(CallbackUnavailable) as refused:
                    await channel.receive_callback(params["msg_signature"], params["timestamp"], params["nonce"], body.encode())
                refusals.append(str(refused.value))
            return refusals
        finally:
            await channel.stop()

    try:
        assert asyncio.run(deliver_twice()) == ["cannot store the message now, send it again"] * 2
        assert seen == []
    finally:
        dead.dispose()


def test_the_app_killed_mid_turn_loses_no_message(peer: WeComPeer, tmp_path: Path) -> None:
    """SIGKILL while Rasa works on a message WeCom was told had arrived: the next app process answers it, once."""
    reply = "好的，您反映的情况已收到"
    rasa = FakeRasa({}, reply=[{"recipient_id": "x", "text": reply}])
    rasa.open_turns.clear()  # the first turn hangs: the app is mid-turn when it is killed
    user, msg_id = f"killed{uuid.uuid4().hex[:6]}", new_id()
    with notice_database("postgresql", tmp_path) as url:
        env = {key.upper(): str(value) for key, value in wecom_settings(peer).items()} | {
            "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "RASA_URL": rasa.url, "KB_EMBEDDING_MODEL": "none",
            "DEFERRED_RETRY_SECONDS": "0.5", "RECEIVED_STALE_SECONDS": "2",
        }  # fmt: skip
        port = free_port()
        try:
            first = start_app(port, env, tmp_path / "first.log")
            try:
                wait_healthy(f"http://127.0.0.1:{port}", first, tmp_path / "first.log")
                params, body = signed_post(encrypt(app_message(user, "楼道里堆满了杂物", msg_id)))
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                    assert post(client, params, body).status_code == 200
                deadline = time.monotonic() + 20
                while not rasa.turns and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert len(rasa.turns) == 1
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=30)
            finally:
                stop(first)
            engine = make_engine(url)
            factory = make_session_factory(engine)
            assert [row.status for row in rows_of(factory, msg_id)] == [RECEIVED]  # noted before WeCom heard 200
            assert sends_to(peer, user)() == []

            rasa.open_turns.set()
            with app_process(free_port(), env, tmp_path / "second.log"):
                [sent] = wait_for(sends_to(peer, user), timeout=30)
                # Replayed once and done (a done message is never picked again), its answer out: nothing left to
                # send it a second time.
                deadline = time.monotonic() + 30
                while [row.status for row in rows_of(factory, msg_id)] != [DONE] or outbound_to(factory, user) != [
                    OutboundStatus.SENT
                ]:
                    assert time.monotonic() < deadline, "the replay was not done and its answer sent"
                    time.sleep(0.05)
                assert len(sends_to(peer, user)()) == 1
            assert sent.body["text"]["content"] == reply
            assert [turn["message"] for turn in rasa.turns] == ["楼道里堆满了杂物"] * 2  # the killed turn, run again
            assert [row.status for row in rows_of(factory, msg_id)] == [DONE]
            engine.dispose()
        finally:
            rasa.close()


# --- pushes out ---------------------------------------------------------------------------------------


def test_the_channel_runs_only_when_configured_and_half_a_configuration_says_what_is_missing() -> None:
    assert WeComConfig.from_settings(Settings(wecom_corp_id="", wecom_agent_id=None)) is None
    with pytest.raises(ValueError, match="WECOM_SECRET"):
        WeComConfig.from_settings(
            Settings(wecom_corp_id=CORP_ID, wecom_agent_id=AGENT_ID, wecom_token=TOKEN, wecom_encoding_aes_key=AES_KEY)
        )
    with pytest.raises(ValueError, match="WECOM_ROBOTS"):
        WeComConfig.from_settings(Settings(**(wecom_settings_for("http://127.0.0.1:9") | {"wecom_robots": '["not a map"]'})))


def test_wecom_declares_the_robot_limits() -> None:
    caps = WeComChannel.capabilities
    assert caps.max_text_bytes == 2048 and caps.max_text_chars * 4 <= 2048
    assert (caps.limits.per_group, caps.limits.window_seconds) == (20, 60.0)


def test_a_long_notice_reaches_the_robot_group_split_under_2048_bytes_and_paced(
    app: httpx.Client, peer: WeComPeer, world: tuple[str, sessionmaker[Session]]
) -> None:
    _, factory = world
    mark = uuid.uuid4().hex[:6]
    # 4-byte emoji and 3-byte Chinese: a split by characters alone would overflow 2048 bytes.
    body = ("冬季供暖通知🔥请各位居民注意用火安全，" * 95)[:1990]
    title = f"供暖{mark}"
    new_notice(factory, NoticeTarget(tags=(ROBOT_TAG,)), title=title, body=body)
    first = wait_for(lambda: [r for r in peer.sent("/cgi-bin/webhook/send", ok=True) if title in r.body["text"]["content"]])
    assert first, "the notice never reached the robot"
    total = int(first[0].body["text"]["content"].rsplit("/", 1)[1].rstrip("）"))
    assert total >= 4  # enough parts for the pacing to show
    start = peer.requests.index(first[0])
    parts = wait_for(lambda: _robot_sends_from(peer, start, total), count=total, timeout=30)
    assert len(parts) == total
    for index, part in enumerate(parts, start=1):
        content = part.body["text"]["content"]
        assert len(content.encode()) <= MAX_TEXT_BYTES
        assert content.endswith(f"（{index}/{total}）")
    # At most 3 in any 2 s (the test's override of 20 per minute): part i+3 waits for part i's window to end.
    for earlier, later in zip(parts, parts[3:], strict=False):
        assert later.at - earlier.at >= 1.9, [round(p.at - parts[0].at, 2) for p in parts]


def _robot_sends_from(peer: WeComPeer, start: int, total: int) -> list[Recorded]:
    """The notice's parts: robot sends from its first part on that end in "/total）"."""
    return [
        r
        for r in peer.requests[start:]
        if r.path == "/cgi-bin/webhook/send"
        and r.answer.get("errcode") == 0
        and r.body["text"]["content"].endswith(f"/{total}）")
    ]


def test_a_rate_limited_robot_send_is_retried(
    app: httpx.Client, peer: WeComPeer, world: tuple[str, sessionmaker[Session]]
) -> None:
    _, factory = world
    title = f"停水通知{uuid.uuid4().hex[:6]}"
    peer.robot_failures[ROBOT_KEY] = 2
    new_notice(factory, NoticeTarget(tags=(ROBOT_TAG,)), title=title, body="明天上午9点到12点停水。")
    attempts = lambda: [r for r in peer.sent("/cgi-bin/webhook/send") if title in r.body["text"]["content"]]  # noqa: E731
    tries = wait_for(attempts, count=3, timeout=30)
    assert [r.answer["errcode"] for r in tries] == [45009, 45009, 0]
    assert tries[0].body == tries[2].body


def test_a_notice_to_an_app_group_chat_goes_through_appchat_send(
    app: httpx.Client, peer: WeComPeer, world: tuple[str, sessionmaker[Session]]
) -> None:
    _, factory = world
    title = f"疫苗接种{uuid.uuid4().hex[:6]}"
    new_notice(factory, NoticeTarget(tags=(APPCHAT_TAG,)), title=title, body="本周六社区卫生站接种流感疫苗。")
    found = lambda: [r for r in peer.sent("/cgi-bin/appchat/send", ok=True) if title in r.body["text"]["content"]]  # noqa: E731
    [sent] = wait_for(found)
    assert sent.body["chatid"] == APPCHAT_GROUP and sent.body["msgtype"] == "text"


# --- through the trained Rasa server ------------------------------------------------------------------


@pytest.mark.rasa
def test_a_policy_question_is_answered_with_its_source_through_wecom(
    database_url: str, rasa_url: str, app_url: str, peer: WeComPeer
) -> None:
    """`app_url` serves Rasa's actions; this app, on the same database, is the one WeCom calls back."""
    settings = Settings(
        database_url=database_url, redis_url=REDIS_URL, rasa_url=rasa_url, app_port=free_port(), **wecom_settings(peer)
    )
    user = f"resident{uuid.uuid4().hex[:6]}"
    with app_server(settings) as base, httpx.Client(base_url=base, timeout=30) as client:
        params, body = signed_post(encrypt(app_message(user, "社区的高龄补贴怎么申请", new_id())))
        assert post(client, params, body).status_code == 200
        sent = wait_for(sends_to(peer, user), timeout=60)
    assert len(sent) == 1, sent
    answer = sent[0].body["text"]["content"]
    assert "高龄" in answer and "来源：" in answer and "示范区民政局" in answer
