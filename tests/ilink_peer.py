"""A local stand-in for WeChat's iLink bot server (ilinkai.weixin.qq.com), speaking HTTP on loopback as
@tencent-weixin/openclaw-weixin 2.4.9 calls it, written from that package's source (src/api/, src/auth/login-qr.ts).

It plays the platform's side: QR codes that a (test) WeChat user scans and confirms, after which a bot identity
with its own token exists; long-polled `getupdates` that hold until a message is there and hand out messages
after the client's `get_updates_buf` cursor (an opaque string, as on the real server); `sendmessage` with the
platform's rules — a message is taken only with a context token of the person it goes to, within the reply
window of their last message, and at most 10 per message of theirs (else `ret` -2) — and a CDN that serves
received pictures AES-128-ECB encrypted. Every request's headers are checked as the real server would
(AuthorizationType, Bearer token, X-WECHAT-UIN, iLink-App-Id, base_info), a stale token gets errcode -14.

Tests drive it: people write (`say`, `send_picture`, `say_raw` for malformed ones), a long-poll is dropped
mid-request (`drop_next_polls`), answers are garbled (`garble_next_polls`), the server restarts on the same port
keeping its state (`restart`), a person's window is aged (`age_window`), and what the bot sent is read back.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

WINDOW_SECONDS = 24 * 3600
PER_INBOUND = 10


@dataclass
class Login:
    code: str
    status: str = "wait"
    user_id: str = ""
    bot_id: str = ""
    token: str = ""
    version: int = 0  # bumped on each change, so a status long-poll returns when there is news
    number: str = ""  # the number WeChat shows on the phone, when it asks for one (need_verifycode)
    tried: list[str] = field(default_factory=list)  # the numbers the client sent


@dataclass
class Person:
    """One bound WeChat user and the bot identity they talk to, with the platform's view of their window."""

    bot_id: str
    user_id: str
    token: str
    log: list[dict[str, Any]] = field(default_factory=list)  # what they wrote, in order (the getupdates stream)
    tokens: set[str] = field(default_factory=set)  # every context token issued to them
    last_inbound: float = 0.0
    taken: int = 0  # messages the bot sent since their last message
    stale: bool = False


@dataclass
class Sent:
    user_id: str
    text: str
    client_id: str
    context_token: str | None
    accepted: bool
    answer: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class IlinkPeer:
    def __init__(self, hold_seconds: float = 1.0) -> None:
        self.hold_seconds = hold_seconds
        self.logins: dict[str, Login] = {}
        self.people: dict[str, Person] = {}  # by token
        self.sends: list[Sent] = []
        self.polls: list[dict[str, Any]] = []  # every getupdates: {"bot_id", "cursor", "answered": n messages}
        self.notified: list[tuple[str, str]] = []
        self.qr_requests: list[dict[str, Any]] = []
        self.header_errors: list[str] = []
        self.cdn: dict[str, bytes] = {}
        self.drop_polls: dict[str, int] = {}  # by user id: the next polls of their bot that are dropped
        self.garbled: dict[str, list[bytes]] = {}  # by user id: raw answers to their bot's next polls
        self.rate_limited = 0
        self.lost_answers = 0  # the next sends are taken, but the connection drops before the answer
        self._seq = 0
        self._connections: set[socket.socket] = set()
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.url = ""

    # --- the server -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # type: ignore[method-assign]  # cut connections
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down at once: the listening socket closed and every open connection cut, held long-polls included."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._lock.notify_all()

    def restart(self, down_seconds: float = 0.0) -> None:
        """The platform goes away (connections refused) and comes back on the same port with its state."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    # --- what tests do ----------------------------------------------------------------------------------

    def last_code(self) -> str:
        with self._lock:
            return list(self.logins)[-1]

    def scan(self, code: str, user_id: str, *, number: str = "") -> None:
        """A WeChat user scans; with `number`, WeChat shows it on their phone and waits for it to be typed in."""
        self._login_change(code, status="need_verifycode" if number else "scaned", user_id=user_id, number=number)

    def confirm(self, code: str) -> Person:
        with self._lock:
            login = self.logins[code]
            bot_id = f"{secrets.token_hex(6)}@im.bot"
            person = Person(bot_id=bot_id, user_id=login.user_id, token=f"tok-{secrets.token_hex(12)}")
            self.people[person.token] = person
            login.bot_id, login.token = bot_id, person.token
        self._login_change(code, status="confirmed")
        return person

    def expire_code(self, code: str) -> None:
        self._login_change(code, status="expired")

    def _login_change(self, code: str, **values: Any) -> None:
        with self._lock:
            login = self.logins[code]
            for name, value in values.items():
                setattr(login, name, value)
            login.version += 1
            self._lock.notify_all()

    def person(self, user_id: str) -> Person:
        with self._lock:
            return next(p for p in self.people.values() if p.user_id == user_id and not p.stale)

    def say(self, user_id: str, text: str) -> str:
        return self._append(user_id, [{"type": 1, "text_item": {"text": text}}])

    def say_voice(self, user_id: str, words: str) -> str:
        item = {
            "type": 3,
            "voice_item": {"encode_type": 6, "playtime": 2300, "text": words, "media": {"encrypt_query_param": "v"}},
        }
        return self._append(user_id, [item])

    def send_picture(self, user_id: str, data: bytes) -> str:
        """A picture as WeChat's CDN keeps it: AES-128-ECB under a random key, fetched by its query parameter."""
        key = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        plain = padder.update(data) + padder.finalize()
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        param = secrets.token_urlsafe(24)
        with self._lock:
            self.cdn[param] = encryptor.update(plain) + encryptor.finalize()
        media = {"encrypt_query_param": param, "aes_key": base64.b64encode(key.hex().encode()).decode(), "encrypt_type": 1}
        return self._append(user_id, [{"type": 2, "image_item": {"media": media, "aeskey": key.hex(), "mid_size": len(data)}}])

    def say_raw(self, user_id: str, message: Any) -> None:
        """Something that is not a proper message, put into the person's stream as it is."""
        with self._lock:
            self.person_locked(user_id).log.append(message)
            self._lock.notify_all()

    def redeliver(self, user_id: str, message_id: str) -> None:
        """The same message (same id) delivered again later in the stream."""
        with self._lock:
            person = self.person_locked(user_id)
            original = next(m for m in person.log if isinstance(m, dict) and str(m.get("message_id")) == message_id)
            person.log.append(dict(original))
            self._lock.notify_all()

    def age_window(self, user_id: str, seconds: float) -> None:
        """Make the person's last message `seconds` older, as if time had passed on the platform."""
        with self._lock:
            self.person_locked(user_id).last_inbound -= seconds

    def make_stale(self, user_id: str) -> None:
        with self._lock:
            self.person_locked(user_id).stale = True

    def drop_next_polls(self, user_id: str, count: int = 1) -> None:
        """The next long-polls of this person's bot are cut mid-request: no answer, the connection closed."""
        with self._lock:
            self.drop_polls[user_id] = self.drop_polls.get(user_id, 0) + count

    def garble_next_polls(self, user_id: str, *bodies: bytes) -> None:
        """The next long-polls of this person's bot are answered with these bytes instead of the protocol's JSON."""
        with self._lock:
            self.garbled.setdefault(user_id, []).extend(bodies)

    def sent_to(self, user_id: str, *, accepted: bool | None = True) -> list[Sent]:
        with self._lock:
            return [s for s in self.sends if s.user_id == user_id and (accepted is None or s.accepted == accepted)]

    def wait(self, found: Callable[[], list[Any]], count: int = 1, timeout: float = 30.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            result = found()
            if len(result) >= count:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count}, got {len(result)}: {result}")
            time.sleep(0.05)

    def person_locked(self, user_id: str) -> Person:
        return next(p for p in self.people.values() if p.user_id == user_id)

    def _append(self, user_id: str, items: list[dict[str, Any]]) -> str:
        with self._lock:
            person = self.person_locked(user_id)
            self._seq += 1
            message_id = (1 << 62) + self._seq * 7919  # uint64 ids, bigger than a double holds exactly
            context = f"ctx-{secrets.token_hex(8)}"
            person.tokens.add(context)
            person.last_inbound, person.taken = time.time(), 0
            person.log.append(
                {
                    "seq": self._seq, "message_id": message_id, "from_user_id": user_id, "to_user_id": person.bot_id,
                    "client_id": "", "create_time_ms": int(time.time() * 1000), "session_id": "",
                    "message_type": 1, "message_state": 2, "item_list": items, "context_token": context,
                }
            )  # fmt: skip
            self._lock.notify_all()
            return str(message_id)

    # --- the protocol -----------------------------------------------------------------------------------

    def check_headers(self, headers: Any, body: dict[str, Any] | None, *, authorized: bool) -> str | None:
        """What the real server would refuse about a request's headers and body; None when it is fine."""
        if headers.get("iLink-App-Id") != "bot" or not str(headers.get("iLink-App-ClientVersion", "")).isdigit():
            return "missing iLink-App-Id / iLink-App-ClientVersion"
        if body is not None and not isinstance(body.get("base_info"), dict) and authorized:
            return "missing base_info"
        if authorized:
            if headers.get("AuthorizationType") != "ilink_bot_token":
                return "AuthorizationType is not ilink_bot_token"
            try:
                uin = base64.b64decode(headers.get("X-WECHAT-UIN", ""), validate=True).decode()
            except Exception:
                return "X-WECHAT-UIN is not base64"
            if not uin.isdigit() or int(uin) >= 2**32:
                return "X-WECHAT-UIN is not a uint32 in decimal"
        return None

    def bot_for(self, headers: Any) -> Person | None:
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        return self.people.get(auth[len("Bearer ") :])

    def get_bot_qrcode(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.qr_requests.append(body)
            code = secrets.token_hex(8)
            self.logins[code] = Login(code)
            return {"qrcode": code, "qrcode_img_content": f"https://liteapp.weixin.qq.com/q/{code}?qrcode={code}&bot_type=3"}

    def qrcode_status(self, code: str, verify_code: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + self.hold_seconds
        with self._lock:
            login = self.logins.get(code)
            if login is None:
                return {"status": "expired"}
            if verify_code is not None and login.status == "need_verifycode":
                login.tried.append(verify_code)
                if verify_code == login.number:
                    login.status, login.version = "scaned", login.version + 1
                return {"status": login.status}
            seen = login.version
            while login.version == seen and time.monotonic() < deadline and self._server is not None:
                self._lock.wait(deadline - time.monotonic())
            answer: dict[str, Any] = {"status": login.status}
            if login.status == "confirmed":
                answer |= {
                    "bot_token": login.token,
                    "ilink_bot_id": login.bot_id,
                    "baseurl": self.url,
                    "ilink_user_id": login.user_id,
                }
            return answer

    def getupdates(self, person: Person, cursor: str) -> tuple[dict[str, Any] | None, bytes | None]:
        """(answer, None), or (None, raw bytes) for a garbled answer, or (None, None) to drop the connection."""
        position = _position(cursor, person.bot_id)
        if position is None:
            return {"ret": -1, "errmsg": "invalid get_updates_buf"}, None
        deadline = time.monotonic() + self.hold_seconds
        with self._lock:
            while len(person.log) <= position and time.monotonic() < deadline and self._server is not None:
                self._lock.wait(deadline - time.monotonic())
            batch = person.log[position:]
            self.polls.append({"bot_id": person.bot_id, "cursor": cursor, "answered": len(batch)})
            if self.drop_polls.get(person.user_id):
                self.drop_polls[person.user_id] -= 1
                return None, None
            if self.garbled.get(person.user_id):
                return None, self.garbled[person.user_id].pop(0)
            new_cursor = _cursor(person.bot_id, len(person.log))
            return {
                "ret": 0,
                "msgs": batch,
                "get_updates_buf": new_cursor,
                "longpolling_timeout_ms": int(self.hold_seconds * 1000),
            }, None

    def sendmessage(self, person: Person, body: dict[str, Any]) -> dict[str, Any]:
        msg = body.get("msg") or {}
        items = msg.get("item_list") or []
        text = "".join((i.get("text_item") or {}).get("text", "") for i in items if i.get("type") == 1)
        to, context = msg.get("to_user_id", ""), msg.get("context_token")
        with self._lock:
            if msg.get("message_type") != 2 or msg.get("message_state") != 2 or not msg.get("client_id"):
                answer = {"ret": -1, "errmsg": "bad message"}
            elif self.rate_limited:
                self.rate_limited -= 1
                answer = {"ret": -2, "errmsg": "rate limited"}
            elif to != person.user_id or context not in person.tokens:
                answer = {"ret": -2, "errmsg": "invalid context_token"}
            elif time.time() - person.last_inbound > WINDOW_SECONDS:
                answer = {"ret": -2, "errmsg": "prepare failed"}
            elif person.taken >= PER_INBOUND:
                answer = {"ret": -2}
            elif len(text.encode()) > 16 * 1024:
                answer = {"ret": -2, "errmsg": "text too long"}
            else:
                person.taken += 1
                self._seq += 1
                answer = {"message_id": (1 << 62) + self._seq}
            self.sends.append(Sent(to, text, msg.get("client_id", ""), context, "ret" not in answer, answer))
            return answer


def _cursor(bot_id: str, position: int) -> str:
    return base64.b64encode(json.dumps({"b": bot_id, "p": position, "n": secrets.token_hex(4)}).encode()).decode()


def _position(cursor: str, bot_id: str) -> int | None:
    if cursor == "":
        return 0
    try:
        data = json.loads(base64.b64decode(cursor, validate=True))
    except Exception:
        return None
    if not isinstance(data, dict) or data.get("b") != bot_id or not isinstance(data.get("p"), int):
        return None
    return data["p"]


def _handler(peer: IlinkPeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with peer._lock:
                peer._connections.add(self.connection)

        def finish(self) -> None:
            with peer._lock:
                peer._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _reply(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _json(self, answer: dict[str, Any], status: int = 200) -> None:
            self._reply(status, json.dumps(answer).encode())

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/ilink/bot/get_qrcode_status":
                problem = peer.check_headers(self.headers, None, authorized=False)
                if problem:
                    peer.header_errors.append(problem)
                    return self._json({"ret": -1, "errmsg": problem}, 400)
                return self._json(peer.qrcode_status(query.get("qrcode", ""), query.get("verify_code")))
            if parts.path == "/c2c/download":
                data = peer.cdn.get(query.get("encrypted_query_param", ""))
                if data is None:
                    return self._reply(404, b"not found", "text/plain")
                return self._reply(200, data, "application/octet-stream")
            self._json({"ret": -1, "errmsg": f"no such API {parts.path}"}, 404)

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                return self._json({"ret": -1, "errmsg": "body is not JSON"}, 400)
            if parts.path == "/ilink/bot/get_bot_qrcode":
                problem = peer.check_headers(self.headers, body, authorized=False)
                if problem or parse_qs(parts.query).get("bot_type") != ["3"]:
                    peer.header_errors.append(problem or "bot_type")
                    return self._json({"ret": -1, "errmsg": problem or "bot_type"}, 400)
                return self._json(peer.get_bot_qrcode(body))
            problem = peer.check_headers(self.headers, body, authorized=True)
            if problem:
                peer.header_errors.append(problem)
                return self._json({"ret": -1, "errmsg": problem}, 400)
            person = peer.bot_for(self.headers)
            if person is None or person.stale:
                return self._json({"ret": -14, "errcode": -14, "errmsg": "session timeout"})
            if parts.path == "/ilink/bot/getupdates":
                answer, raw_answer = peer.getupdates(person, str(body.get("get_updates_buf", "")))
                if answer is None and raw_answer is None:
                    self.close_connection = True  # the long-poll dropped mid-request: no answer at all
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if raw_answer is not None:
                    return self._reply(200, raw_answer)
                assert answer is not None
                return self._json(answer)
            if parts.path == "/ilink/bot/sendmessage":
                answer = peer.sendmessage(person, body)
                with peer._lock:
                    lost, peer.lost_answers = peer.lost_answers > 0, max(peer.lost_answers - 1, 0)
                if lost:  # WeChat took it, the answer never came back: the sender cannot know
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                return self._json(answer)
            if parts.path in ("/ilink/bot/msg/notifystart", "/ilink/bot/msg/notifystop"):
                with peer._lock:
                    peer.notified.append((person.bot_id, parts.path.rsplit("/", 1)[1]))
                return self._json({"ret": 0})
            self._json({"ret": -1, "errmsg": f"no such API {parts.path}"}, 404)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def ilink_peer(hold_seconds: float = 1.0) -> Iterator[IlinkPeer]:
    peer = IlinkPeer(hold_seconds)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()
