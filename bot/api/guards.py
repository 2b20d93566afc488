"""The app's edge: what every request must be before any route sees it, and what an error may say back.

Routes trust the strings they get, and two databases disagree on which strings exist: PostgreSQL refuses a NUL
character that SQLite stores, neither driver can encode a lone UTF-16 surrogate (`"\\ud800"` is valid JSON, but
not text), and `NaN`/`Infinity`/`1e400` (Python's `json` reads all three) end as a validation error that JSON
cannot carry back. Checking that in each route would miss the next one, so `RequestGuard` checks it once, for
every route, as a plain ASGI middleware (it sees the bytes before FastAPI parses them):

- path and query string: no NUL, no surrogate;
- body: at most `MAX_REQUEST_BODY_BYTES` (413), refused from its declared Content-Length before a byte is read,
  counted as it streams when chunked; upload routes keep their own, larger limits (`OWN_LIMITS`);
- a JSON body: no NaN/Infinity/overflowing number, and no NUL or surrogate in any key or string; a form body:
  no NUL. A body that is not even valid JSON is left to FastAPI, which already answers it with a 4xx.

Refused, not cleaned: a NUL or a surrogate is never something a person typed, and quietly changing what a caller
sent would store something it did not say. Platform messages (WeCom XML, wechaty) do not pass here: they were
already sent and cannot be refused, so IncomingMessage drops those characters when it is made (bot/messages.py).

`validation_failed` replaces FastAPI's 422 handler, which echoes every invalid input whole (a 5 MB field came
back as a 5 MB error) and fails with a 500 on the NaN or the bytes it is echoing: here each input is cut to a short
excerpt and made JSON-safe first.

`client_address` is the one place that decides who a request comes from (login throttling, sessions): the TCP
peer, unless that peer is a proxy named in TRUSTED_PROXIES, whose X-Forwarded-For (or X-Real-IP) is then read.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_plus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.channels.wecom.channel import MAX_BODY_BYTES as WECOM_MAX_BODY_BYTES
from bot.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Routes that read large bodies and enforce a limit of their own. None: the route counts its body itself (the
# knowledge import streams up to 10 MB and drains or drops the rest, bot/api/knowledge_admin.py; Rasa's action
# calls carry a whole conversation's tracker and come only from Rasa). A number: that limit instead of the default.
OWN_LIMITS: dict[str, int | None] = {
    "/api/v1/knowledge/import": None,
    "/webhook": None,
    "/channels/wecom/callback": WECOM_MAX_BODY_BYTES,
}
EXCERPT_CHARS = 200  # the most of any one input an error body echoes
MAX_ERRORS = 20  # the most validation errors one answer lists


class _NotFinite(ValueError):
    """A JSON number Python reads as NaN or ±inf."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf without complaint
        raise _NotFinite(text)
    return value


def _constant(text: str) -> float:
    raise _NotFinite(text)  # NaN, Infinity, -Infinity: not JSON, though Python's json reads them


_NUL = "a NUL character (\\u0000), which cannot be stored"
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def text_problem(text: str) -> str | None:
    """What makes this string unstorable, or None."""
    if "\x00" in text:
        return _NUL
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone UTF-16 surrogate (such as \\ud800), which is not text"
    return None


def _json_problem(value: object) -> str | None:
    """The first unstorable key or string anywhere in a parsed JSON document (a loop, not recursion: any depth)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
        elif isinstance(item, dict):
            problem = next((p for p in map(text_problem, item) if p), None)
            stack.extend(item.values())
        elif isinstance(item, list):
            problem = None
            stack.extend(item)
        else:
            problem = None
        if problem:
            return problem
    return None


def _is_json(media: str) -> bool:
    """The bodies FastAPI parses as JSON: no content type, application/json, application/*+json."""
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


def body_problem(content_type: str, body: bytes) -> str | None:
    """Why this body is refused (422), or None: NaN/Infinity/overflow or unstorable strings in JSON, NUL in forms."""
    media = content_type.split(";")[0].strip().lower()
    if not body or not (_is_json(media) or media in _FORMS):
        return None
    if media == "multipart/form-data":  # only text fields outside the upload routes: a NUL byte is never text
        return _where("body", _NUL) if b"\x00" in body else None
    if media == "application/x-www-form-urlencoded":
        return _where("body", text_problem(unquote_plus(body.decode("latin-1"))))
    try:
        document = json.loads(body, parse_float=_finite, parse_constant=_constant)
    except _NotFinite as exc:
        return f"the JSON body contains {str(exc)[:20]}: NaN, Infinity and numbers beyond a float's range are not JSON"
    except (ValueError, RecursionError):  # not JSON (or too deep, or a 5000-digit integer): FastAPI says so itself
        # Without a content type FastAPI reads JSON but Open311 reads a form: check it as the form it may be.
        return _where("body", text_problem(unquote_plus(body.decode("latin-1")))) if media == "" else None
    return _where("JSON body", _json_problem(document))


def url_problem(scope: Scope) -> str | None:
    """Path and query string are decoded (percent-escapes undone) the way the routes will read them."""
    problem = _where("path", text_problem(scope.get("path", "")))
    if problem is None and (query := scope.get("query_string", b"")):
        problem = _where("query string", text_problem(unquote_plus(query.decode("latin-1"))))
    return problem


def _where(part: str, problem: str | None) -> str | None:
    return f"the {part} contains {problem}" if problem else None


def _refusal(path: str, status: int, message: str) -> JSONResponse:
    """The error in the shape the route's clients read: GeoReport's list for Open311, FastAPI's detail elsewhere.

    A 413 closes the connection: the server would otherwise read (and throw away) the rest of the body to reach the
    next request on it, which is the very work the limit is there to spare.
    """
    content: object = [{"code": status, "description": message}] if path.startswith("/open311/") else {"detail": message}
    return JSONResponse(content, status_code=status, headers={"Connection": "close"} if status == 413 else None)


class _TooLarge(Exception):
    pass


class RequestGuard:
    """Pure ASGI (not BaseHTTPMiddleware): it must see the body as it arrives and hand the same bytes on."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if problem := url_problem(scope):
            await _refusal(path, 422, problem)(scope, receive, send)
            return
        limit = OWN_LIMITS.get(path, self.max_body_bytes)
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length", b"").strip()
        if limit is None or (declared in (b"", b"0") and b"transfer-encoding" not in headers):  # no body to guard
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than {limit} bytes"
        if declared.isdigit() and int(declared) > limit:
            await _refusal(path, 413, too_large)(scope, receive, send)  # refused before a byte of it is read
            return
        try:
            body, disconnected = await _read_body(receive, limit)
        except _TooLarge:
            await _refusal(path, 413, too_large)(scope, receive, send)
            return
        if problem := body_problem(headers.get(b"content-type", b"").decode("latin-1"), body):
            await _refusal(path, 422, problem)(scope, receive, send)
            return
        await self.app(scope, _replay(body, disconnected, receive), send)


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The whole body, counted as it arrives; True when the client went away before sending all of it."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    """The body once, as one message; then the real channel (a streaming response listens there for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if disconnected:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# ---------------------------------------------------------------- validation errors


def excerpt(value: Any) -> Any:
    """A JSON-safe, short stand-in for any input: strings cut to EXCERPT_CHARS, containers to their JSON's first
    EXCERPT_CHARS characters, NaN/inf and bytes as text, surrogates escaped. Never raises."""
    try:
        safe = _json_safe(value, depth=0)
        if isinstance(safe, str):
            return _cut(safe)
        dumped = json.dumps(safe, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return safe if len(dumped) <= EXCERPT_CHARS else _cut(dumped)
    except Exception:  # a value this code did not foresee: say so rather than fail the error answer itself
        return "(not shown)"


def _cut(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _json_safe(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _cut(value[: EXCERPT_CHARS + 1].encode("utf-8", "backslashreplace").decode("utf-8"))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**EXCERPT_CHARS else "(a number too long to show)"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray):
        return _json_safe(bytes(value[: EXCERPT_CHARS * 4]).decode("utf-8", "replace"), depth)
    if depth > 5:
        return "…"
    if isinstance(value, dict):
        items = list(value.items())[:EXCERPT_CHARS]
        return {str(_json_safe(k, depth + 1)): _json_safe(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v, depth + 1) for v in list(value)[:EXCERPT_CHARS]]
    return _json_safe(str(value), depth)


def _error(error: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": _json_safe(error.get("type", "value_error"), 0),
        "loc": [_json_safe(part, 1) for part in error.get("loc", ())],
        "msg": _cut(_json_safe(str(error.get("msg", "")), 0)),
    }
    if "input" in error:
        out["input"] = excerpt(error["input"])
    if error.get("ctx"):
        out["ctx"] = excerpt(error["ctx"])
    return out


async def validation_failed(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 with each input cut to an excerpt and at most MAX_ERRORS errors (a list of 10,000 bad items
    must not come back as 10,000 errors)."""
    errors = list(exc.errors())
    detail = [_error(e) for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        detail.append({"type": "too_many_errors", "loc": [], "msg": f"{len(errors) - MAX_ERRORS} more errors not shown"})
    return JSONResponse({"detail": detail}, status_code=422)


# ---------------------------------------------------------------- who is asking


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: str | None, networks: Sequence[Network]) -> bool:
    ip = _ip(address) if address else None
    return ip is not None and any(ip in network for network in networks)


def _forwarded_chain(request: Request) -> list[str]:
    values = request.headers.getlist("x-forwarded-for")
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def trusted_networks(request: Request) -> tuple[Network, ...]:
    return getattr(request.app.state, "trusted_proxies", ())


def from_trusted_proxy(request: Request) -> bool:
    """The TCP peer is one of TRUSTED_PROXIES: its X-Forwarded-* headers say something about the client."""
    return _trusted(request.client.host if request.client else None, trusted_networks(request))


def client_address(request: Request) -> str | None:
    """The client's address: the TCP peer, or, when the peer is a trusted proxy, the address that proxy saw.

    X-Forwarded-For is read from the right: each trusted proxy appends the address it received the request from,
    so the rightmost entry that is not itself a trusted proxy is the client; entries to its left are whatever the
    client wrote and are ignored. An entry that is not an address ends the walk at the last trusted hop.
    """
    peer = request.client.host if request.client else None
    networks = trusted_networks(request)
    if not _trusted(peer, networks):
        return peer
    chain = _forwarded_chain(request)
    if not chain:
        real = _ip(request.headers.get("x-real-ip", ""))
        return str(real) if real is not None else peer
    address = peer
    for hop in reversed(chain):
        ip = _ip(hop)
        if ip is None:
            break
        address = str(ip)
        if not any(ip in network for network in networks):
            break
    return address


def install(app: FastAPI, settings: Settings) -> None:
    """The guard around every request, the trimmed 422 handler, and the trusted proxies `client_address` reads."""
    app.state.trusted_proxies = settings.trusted_proxies  # parsed when settings load (bot/setting_formats.py)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_request_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_failed)  # type: ignore[arg-type]
