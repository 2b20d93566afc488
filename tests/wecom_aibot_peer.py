"""WeCom's side of the smart robot's long connection, on loopback, for the channel's tests.

A WebSocket server (websockets, in a thread with its own event loop) that speaks the frames as the official SDKs
send and expect them (@wecom/aibot-node-sdk 1.0.7, wecom-aibot-sdk 1.0.8), written from the SDKs' source and not
from the app's code:
- the first frame must be `aibot_subscribe` with the robot's bot_id and secret: answered errcode 0, or an error
  and the socket closed; a second connection for the same robot takes over and the older one is sent
  `disconnected_event` and closed, as WeCom does;
- `ping` is answered; `aibot_respond_msg` is taken only with the req_id of a callback sent on the same connection
  (else errcode 846605 invalid req_id) and a finished stream of at most 20480 bytes; `aibot_send_msg` only as
  markdown (text: errcode 40008) into a chat that has talked to the robot; each answer carries the frame's req_id;
- members speak through `say`, `send_image` (the picture served here, AES-256-CBC encrypted with a key of its own
  as WeCom does: key = base64 aeskey, IV = its first 16 bytes, PKCS#7 to 32-byte blocks), `send_mixed`,
  `send_voice`; `send_raw` sends any frame, well-formed or not; `drop` cuts the TCP connection without a close
  frame; `refuse_connections` answers the handshake 503 (WeCom unreachable).
- `chat_limit` plays WeCom's rate limit per chat (errcode 45009 beyond it), `failures` forces 45009 answers.
Every reply and push is recorded with its chat, its time and the connection it came over.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bot.embedded import free_port
from tests.support.channel_hosts import AppHost

T = TypeVar("T")

BOT_ID = "aibTestRobot0001"
SECRET = "aibot-secret-for-tests"
STREAM_MAX_BYTES = 20480


@dataclass
class Sent:
    """A message the robot sent: a reply in place (`kind` reply, the callback's req_id) or a push."""

    kind: str
    chat: str  # the group's chatid, or the member's userid for a private chat
    content: str
    req_id: str
    connection: int
    at: float
    frame: dict[str, Any]


@dataclass
class _Link:
    number: int
    ws: ServerConnection
    callbacks: dict[str, str] = field(default_factory=dict)  # req_id -> chat, of callbacks sent on this connection
    subscribed: bool = False


def encrypt_file(data: bytes, aes_key: str) -> bytes:
    key = base64.b64decode(aes_key + "=" * (-len(aes_key) % 4))
    pad = 32 - len(data) % 32
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()


class AibotPeer:
    def __init__(self, bot_id: str = BOT_ID, secret: str = SECRET) -> None:
        self.bot_id, self.secret = bot_id, secret
        self.port = free_port()
        self.sent_messages: list[Sent] = []
        self.refused: list[dict[str, Any]] = []  # frames answered with an errcode, with it
        self.subscriptions = 0
        self.refuse_connections = False
        self.chat_limit: tuple[int, float] | None = None  # (messages, seconds) per chat
        self.failures: dict[str, int] = {}  # chat -> how many sends to refuse with 45009 first
        self.known_chats: set[str] = set()
        self.callback_req_ids: list[str] = []  # of every message callback sent, in order
        self._accepted: dict[str, list[float]] = {}
        self._files: dict[str, bytes] = {}
        self._links: list[_Link] = []
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._server = self._run(self._serve())

    async def _serve(self) -> Server:
        return await serve(self._handle, "127.0.0.1", self.port, process_request=self._http, ping_interval=None)

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._run(self._server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(15)

    # --- HTTP on the same port: picture downloads, and WeCom being unreachable --------------------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/files/"):
            data = self._files.get(request.path)
            if data is None:
                return connection.respond(404, "no such file\n")
            headers = Headers([("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
            return Response(200, "OK", headers, data)
        if self.refuse_connections:
            return connection.respond(503, "unavailable\n")
        return None

    # --- the protocol ------------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        link = _Link(next(self._numbers), ws)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            req_id = first["headers"]["req_id"]
            body = first.get("body") or {}
            if first.get("cmd") != "aibot_subscribe" or body.get("bot_id") != self.bot_id or body.get("secret") != self.secret:
                await self._answer(ws, req_id, 40001, "invalid bot_id or secret")
                await ws.close()
                return
            for older in [old for old in self._links if old.subscribed]:
                older.subscribed = False
                with contextlib.suppress(ConnectionClosed):  # it may be gone already (its process killed)
                    await self._event(older, "disconnected_event")
                    await older.ws.close()
            link.subscribed = True
            self._links.append(link)
            self.subscriptions += 1
            await self._answer(ws, req_id, 0, "ok")
            async for raw in ws:
                await self._take(link, json.loads(raw))
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            link.subscribed = False

    async def _answer(self, ws: ServerConnection, req_id: str, errcode: int, errmsg: str) -> None:
        await ws.send(json.dumps({"headers": {"req_id": req_id}, "errcode": errcode, "errmsg": errmsg}))

    async def _take(self, link: _Link, frame: dict[str, Any]) -> None:
        cmd, req_id, body = frame.get("cmd"), frame["headers"]["req_id"], frame.get("body") or {}
        if cmd == "ping":
            await self._answer(link.ws, req_id, 0, "ok")
            return
        if cmd == "aibot_respond_msg":
            chat = link.callbacks.get(req_id)
            stream = body.get("stream") or {}
            content = str(stream.get("content", ""))
            if chat is None:
                error = (846605, "invalid req_id")
            elif body.get("msgtype") != "stream" or not stream.get("id") or stream.get("finish") is not True:
                error = (40058, "invalid stream reply")
            elif len(content.encode()) > STREAM_MAX_BYTES:
                error = (40058, "content exceeds 20480 bytes")
            else:
                error = self._limited(chat)
            await self._record(link, "reply", chat or "?", content, req_id, frame, error)
            return
        if cmd == "aibot_send_msg":
            chat = str(body.get("chatid", ""))
            content = str((body.get("markdown") or {}).get("content", ""))
            if body.get("msgtype") != "markdown":
                error = (40008, "invalid message type")
            elif chat not in self.known_chats:
                error = (93006, "chat not found")  # the peer's own code: the robot was never talked to there
            else:
                error = self._limited(chat)
            await self._record(link, "push", chat, content, req_id, frame, error)
            return
        await self._answer(link.ws, req_id, 40058, f"unknown cmd {cmd}")

    def _limited(self, chat: str) -> tuple[int, str] | None:
        if self.failures.get(chat, 0) > 0:
            self.failures[chat] -= 1
            return (45009, "api freq out of limit")
        if self.chat_limit is not None:
            count, window = self.chat_limit
            now = time.monotonic()
            recent = [at for at in self._accepted.get(chat, []) if at > now - window]
            if len(recent) >= count:
                return (45009, "api freq out of limit")
        return None

    async def _record(
        self, link: _Link, kind: str, chat: str, content: str, req_id: str, frame: dict[str, Any], error: tuple[int, str] | None
    ) -> None:
        now = time.monotonic()
        with self._lock:
            if error is None:
                self._accepted.setdefault(chat, []).append(now)
                self.sent_messages.append(Sent(kind, chat, content, req_id, link.number, now, frame))
            else:
                self.refused.append({"kind": kind, "chat": chat, "errcode": error[0], "frame": frame})
        await self._answer(link.ws, req_id, *(error or (0, "ok")))

    async def _event(self, link: _Link, event_type: str) -> None:
        body = {"msgid": uuid.uuid4().hex, "create_time": int(time.time()), "aibotid": self.bot_id,
                "from": {"userid": "sys"}, "msgtype": "event", "event": {"eventtype": event_type}}  # fmt: skip
        await link.ws.send(json.dumps({"cmd": "aibot_event_callback", "headers": {"req_id": uuid.uuid4().hex}, "body": body}))

    # --- members speaking --------------------------------------------------------------------------------

    def _current(self) -> _Link:
        live = [link for link in self._links if link.subscribed]
        if not live:
            raise AssertionError("no robot is connected to the peer")
        return live[-1]

    def callback(self, user: str, content: dict[str, Any], *, chat: str | None = None, msgid: str | None = None) -> str:
        """A member's message to the robot (in `chat`, @-mentioning it; else privately); its msgid."""
        msgid = msgid or uuid.uuid4().hex
        body: dict[str, Any] = {"msgid": msgid, "aibotid": self.bot_id, "chattype": "group" if chat else "single",
                                "from": {"userid": user}, "create_time": int(time.time()), **content}  # fmt: skip
        if chat:
            body["chatid"] = chat
        target = chat or user
        self.known_chats.add(target)

        async def send() -> None:
            link = self._current()
            req_id = f"aibot_msg_callback_{uuid.uuid4().hex}"
            link.callbacks[req_id] = target
            self.callback_req_ids.append(req_id)
            await link.ws.send(json.dumps({"cmd": "aibot_msg_callback", "headers": {"req_id": req_id}, "body": body}))

        self._run(send())
        return msgid

    def say(self, user: str, text: str, *, chat: str | None = None, msgid: str | None = None) -> str:
        content = f"@网格助手 {text}" if chat else text  # WeCom keeps the robot's @ in a group message's text
        return self.callback(user, {"msgtype": "text", "text": {"content": content}}, chat=chat, msgid=msgid)

    def send_voice(self, user: str, words: str, *, chat: str | None = None) -> str:
        return self.callback(user, {"msgtype": "voice", "voice": {"content": words}}, chat=chat)

    def picture(self, data: bytes) -> dict[str, str]:
        """The picture served encrypted under a key of its own: the `image` part of a message."""
        aes_key = base64.b64encode(os.urandom(32)).decode().rstrip("=")
        path = f"/files/{hashlib.sha256(data).hexdigest()[:16]}-{uuid.uuid4().hex[:6]}"
        self._files[path] = encrypt_file(data, aes_key)
        return {"url": f"http://127.0.0.1:{self.port}{path}", "aeskey": aes_key}

    def send_image(self, user: str, data: bytes, *, chat: str | None = None) -> str:
        return self.callback(user, {"msgtype": "image", "image": self.picture(data)}, chat=chat)

    def send_mixed(self, user: str, text: str, data: bytes, *, chat: str | None = None) -> str:
        items = [{"msgtype": "text", "text": {"content": f"@网格助手 {text}" if chat else text}},
                 {"msgtype": "image", "image": self.picture(data)}]  # fmt: skip
        return self.callback(user, {"msgtype": "mixed", "mixed": {"msg_item": items}}, chat=chat)

    def send_raw(self, data: str | bytes) -> None:
        self._run(self._current().ws.send(data))

    def drop(self) -> None:
        """The network goes: the TCP connection is cut, no close frame."""

        async def cut() -> None:
            link = self._current()
            link.subscribed = False
            link.ws.transport.abort()

        self._run(cut())

    def take_over(self) -> None:
        """Another process subscribes with the same robot: WeCom tells this connection and closes it."""

        async def kick() -> None:
            link = self._current()
            link.subscribed = False
            await self._event(link, "disconnected_event")
            await link.ws.close()

        self._run(kick())

    def connected(self) -> bool:
        return any(link.subscribed for link in self._links)

    def connection_number(self) -> int:
        return self._current().number

    # --- what the robot sent -----------------------------------------------------------------------------

    def sent(self, chat: str | None = None, kind: str | None = None) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent_messages if (chat is None or s.chat == chat) and (kind is None or s.kind == kind)]

    def wait_sent(self, chat: str, count: int = 1, timeout: float = 30) -> list[Sent]:
        """Wait until the robot has sent at least `count` messages into `chat`; all of them, oldest first."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.sent(chat)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} message(s) to {chat}, got {[(s.kind, s.content) for s in found]}")
            time.sleep(0.05)

    def wait_connected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.connected():
            if time.monotonic() > deadline:
                raise AssertionError("the robot never connected to the peer")
            time.sleep(0.05)


class AibotHost(AppHost):
    """The app with the smart robot channel, served from a thread (tests/support/channel_hosts.py)."""

    channel_name = "wecom_aibot"
