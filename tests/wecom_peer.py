"""A local stand-in for WeCom's server API (qyapi.weixin.qq.com) that records every request it gets.

It answers the way WeCom documents: gettoken hands out tokens, the app APIs refuse a token that was
expired (errcode 42001), robots refuse texts over 2048 bytes (40058) and can be told to answer 45009
(rate limited) a number of times. Tests read `requests` to see exactly what the adapter sent over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    answer: dict[str, Any]
    at: float = field(default_factory=time.monotonic)


class WeComPeer:
    def __init__(self, corp_id: str, secret: str) -> None:
        self.corp_id = corp_id
        self.secret = secret
        self.requests: list[Recorded] = []
        self.valid_tokens: set[str] = set()
        self.robot_keys: set[str] = set()
        self.robot_failures: dict[str, int] = {}  # robot key -> how many more sends answer 45009
        self._issued = 0
        self._lock = threading.Lock()
        self.url = ""

    # --- what tests change ------------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        with self._lock:
            self.valid_tokens.clear()

    def sent(self, path: str, *, ok: bool | None = None) -> list[Recorded]:
        with self._lock:
            found = [r for r in self.requests if r.path == path]
        if ok is not None:
            found = [r for r in found if (r.answer.get("errcode", 0) == 0) == ok]
        return found

    # --- answers ----------------------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            result = self._answer(method, path, query, body)
            self.requests.append(Recorded(method, path, query, body, result))
            return result

    def _answer(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if path == "/cgi-bin/gettoken":
            if query.get("corpid") != self.corp_id or query.get("corpsecret") != self.secret:
                return {"errcode": 40013, "errmsg": "invalid corpid or secret"}
            self._issued += 1
            token = f"token-{self._issued}"
            self.valid_tokens.add(token)
            return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        if path in ("/cgi-bin/message/send", "/cgi-bin/appchat/send"):
            if query.get("access_token") not in self.valid_tokens:
                return {"errcode": 42001, "errmsg": "access_token expired"}
            if _too_long(body):
                return {"errcode": 45002, "errmsg": "content size out of limit"}
            if path == "/cgi-bin/message/send" and str(body.get("touser", "")).startswith("gone-"):
                return {"errcode": 0, "errmsg": "ok", "invaliduser": body["touser"]}
            return {"errcode": 0, "errmsg": "ok"}
        if path == "/cgi-bin/webhook/send":
            key = query.get("key", "")
            if key not in self.robot_keys:
                return {"errcode": 93000, "errmsg": "invalid webhook url"}
            if self.robot_failures.get(key, 0) > 0:
                self.robot_failures[key] -= 1
                return {"errcode": 45009, "errmsg": "api freq out of limit"}
            if _too_long(body):
                return {"errcode": 40058, "errmsg": "content exceed max length 2048"}
            return {"errcode": 0, "errmsg": "ok"}
        return {"errcode": 404, "errmsg": f"no such API {method} {path}"}


def _too_long(body: dict[str, Any]) -> bool:
    content = (body.get("text") or {}).get("content", "")
    return len(str(content).encode()) > 2048


def _handler(peer: WeComPeer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            payload = json.dumps(peer.answer(self.command, parts.path, query, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def wecom_peer(corp_id: str, secret: str) -> Iterator[WeComPeer]:
    peer = WeComPeer(corp_id, secret)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(peer))
    peer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
