"""One long connection to WeCom, from subscribe to its end: frames read in order, our frames answered by req_id.

The reader owns the socket's input. Every frame is parsed on its own: one that is not the protocol's (not JSON,
no req_id, a binary frame) is logged and skipped and the connection kept, where the PyPI SDK drops the whole
connection on a JSON array. WeCom's answer to one of our frames resolves the request waiting on its req_id;
callbacks and events go to `on_push` in arrival order (it must not block: the channel queues them). Heartbeats
follow the SDKs: a ping every `heartbeat_seconds`, and two pings in a row without an answer mean the
connection is dead (closed, so the channel reconnects). When the socket ends, every request still waiting
fails with `ConnectionLost` instead of waiting out its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bot.channels.sender import SendError
from bot.channels.wecom_aibot import protocol
from bot.channels.wecom_aibot.protocol import Frame, MalformedFrame

log = logging.getLogger(__name__)

_MISSED_PINGS_ALLOWED = 2
_LOGGED_FRAME_CHARS = 200


class ConnectionLost(SendError):
    """The socket closed (or was never there) before WeCom answered: worth trying again on the next connection."""


class AibotError(SendError):
    """WeCom answered one of our frames with an errcode."""

    def __init__(self, what: str, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeCom {what}: errcode {errcode} {errmsg}".strip(), retryable=errcode not in protocol.PERMANENT_ERRORS)
        self.errcode = errcode


class Connection:
    def __init__(self, ws: ClientConnection, on_push: Callable[[Frame], None], *, timeout: float) -> None:
        self._ws = ws
        self._on_push = on_push
        self._timeout = timeout
        self._waiting: dict[str, asyncio.Future[Frame]] = {}
        self._missed_pings = 0
        self.closed_because = ""

    async def read(self) -> str:
        """Read until the socket ends; returns why it ended."""
        try:
            async for raw in self._ws:
                self._take(raw)
            reason = "WeCom closed the connection"
        except ConnectionClosed as exc:
            reason = f"the connection dropped ({exc})"
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionLost("the connection to WeCom ended before it answered"))
            self._waiting.clear()
        return self.closed_because or reason

    def _take(self, raw: str | bytes) -> None:
        try:
            frame = protocol.parse(raw)
        except MalformedFrame as exc:
            shown = raw[:_LOGGED_FRAME_CHARS] if isinstance(raw, str) else f"<{len(raw)} bytes>"
            log.warning("WeCom smart robot: malformed frame skipped (%s): %r", exc, shown)
            return
        if frame.is_answer:
            if frame.req_id.startswith(protocol.PING + "_"):
                self._missed_pings = 0
            future = self._waiting.pop(frame.req_id, None)
            if future is not None and not future.done():
                future.set_result(frame)
            elif not frame.req_id.startswith(protocol.PING + "_"):
                log.info("WeCom smart robot: answer to nothing we are waiting for (req_id %s) ignored", frame.req_id)
            return
        try:
            self._on_push(frame)
        except Exception:  # a push we cannot take must not end the connection that carries the others
            log.exception("WeCom smart robot: %s frame %s could not be taken", frame.cmd, frame.req_id)

    async def request(self, what: str, req_id: str, text: str) -> Frame:
        """Send one frame and wait for WeCom's answer to it; an errcode raises `AibotError`."""
        if req_id in self._waiting:
            raise SendError(f"WeCom {what}: a frame with req_id {req_id} is already waiting for its answer")
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        try:
            try:
                await self._ws.send(text)
            except ConnectionClosed as exc:
                raise ConnectionLost(f"WeCom {what}: the connection is closed ({exc})") from None
            try:
                answer = await asyncio.wait_for(asyncio.shield(future), self._timeout)
            except TimeoutError:
                raise SendError(f"WeCom {what}: no answer within {self._timeout:.0f} s") from None
        finally:
            if self._waiting.get(req_id) is future:
                del self._waiting[req_id]
        if answer.errcode != 0:
            raise AibotError(what, answer.errcode, answer.errmsg)
        return answer

    async def heartbeat(self, interval: float) -> str:
        """Ping every `interval`; returns (after closing the socket) once WeCom stopped answering them."""
        while True:
            await asyncio.sleep(interval)
            if self._missed_pings >= _MISSED_PINGS_ALLOWED:
                self.closed_because = f"no answer to {self._missed_pings} heartbeats in a row"
                await self.close()
                return self.closed_because
            self._missed_pings += 1
            _req_id, text = protocol.ping()
            with contextlib.suppress(ConnectionClosed):
                await self._ws.send(text)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), 3)
