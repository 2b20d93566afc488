"""The WeCom smart robot's long-connection protocol: JSON frames over one WebSocket, as the official SDKs send them.

Read from @wecom/aibot-node-sdk 1.0.7 (WeCom's own) and wecom-aibot-sdk 1.0.8 (PyPI), which agree frame for frame:

    us → WeCom   {"cmd": "aibot_subscribe", "headers": {"req_id": …}, "body": {"bot_id": …, "secret": …}}
                 {"cmd": "ping", "headers": {"req_id": …}}
                 {"cmd": "aibot_respond_msg", "headers": {"req_id": <the callback's>}, "body": {"msgtype": "stream",
                      "stream": {"id": …, "finish": true, "content": <markdown>}}}
                 {"cmd": "aibot_send_msg", "headers": {"req_id": …}, "body": {"chatid": <userid or group chatid>,
                      "msgtype": "markdown", "markdown": {"content": …}}}
    WeCom → us   {"cmd": "aibot_msg_callback" | "aibot_event_callback", "headers": {"req_id": …}, "body": {…}}
                 {"headers": {"req_id": <ours>}, "errcode": 0, "errmsg": "ok"}      (the answer to each of ours)

Our req_ids are `<cmd>_<milliseconds>_<8 hex>` like the SDKs' (`generateReqId`); WeCom echoes them in its answer.
A reply names the callback's req_id, which is only good on the connection it came over (errcode 846605 after a
reconnect) and a streamed reply expires six minutes after it started (846608): the channel then pushes instead.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

SUBSCRIBE = "aibot_subscribe"
PING = "ping"
RESPOND = "aibot_respond_msg"
SEND = "aibot_send_msg"
MESSAGE_CALLBACK = "aibot_msg_callback"
EVENT_CALLBACK = "aibot_event_callback"
# The event WeCom sends an older connection when a newer one subscribed with the same robot, before closing it.
TAKEN_OVER_EVENT = "disconnected_event"

# Answers to a reply that mean "this req_id can no longer be answered in place": push the message instead.
INVALID_REQ_ID = 846605
STREAM_EXPIRED = 846608
REPLY_GONE = frozenset({INVALID_REQ_ID, STREAM_EXPIRED})
# Trying the same frame again cannot help: a message type the command does not take (40008, e.g. text to
# aibot_send_msg, which takes markdown and cards only).
PERMANENT_ERRORS = frozenset({40008})


class MalformedFrame(ValueError):
    """A frame that is not one of the protocol's: logged and skipped, the connection kept."""


@dataclass(frozen=True)
class Frame:
    req_id: str
    cmd: str = ""  # empty for WeCom's answer to one of our frames
    body: dict[str, Any] = field(default_factory=dict)
    errcode: int = 0
    errmsg: str = ""

    @property
    def is_answer(self) -> bool:
        return not self.cmd


def new_req_id(prefix: str) -> str:
    return f"{prefix}_{int(time.time() * 1000)}_{secrets.token_hex(4)}"


def encode(cmd: str, req_id: str, body: dict[str, Any] | None = None) -> str:
    frame: dict[str, Any] = {"cmd": cmd, "headers": {"req_id": req_id}}
    if body is not None:
        frame["body"] = body
    return json.dumps(frame, ensure_ascii=False)


def parse(raw: str | bytes) -> Frame:
    """One received frame; anything that is not a JSON object with a req_id (and, for a push, a body) is malformed."""
    if isinstance(raw, bytes):
        raise MalformedFrame(f"binary frame of {len(raw)} bytes (the protocol is JSON text)")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedFrame(f"a JSON {type(data).__name__}, not an object")
    headers = data.get("headers")
    req_id = headers.get("req_id") if isinstance(headers, dict) else None
    if not isinstance(req_id, str) or not req_id:
        raise MalformedFrame("no headers.req_id")
    cmd = data.get("cmd") or ""
    if not isinstance(cmd, str):
        raise MalformedFrame("cmd is not a string")
    body = data.get("body")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise MalformedFrame("body is not an object")
    if cmd in (MESSAGE_CALLBACK, EVENT_CALLBACK) and not body:
        raise MalformedFrame(f"{cmd} without a body")
    errcode = data.get("errcode", 0)
    if cmd == "" and not isinstance(errcode, int):
        raise MalformedFrame("errcode is not a number")
    return Frame(req_id=req_id, cmd=cmd, body=body, errcode=int(errcode or 0), errmsg=str(data.get("errmsg") or ""))


def subscribe(bot_id: str, secret: str) -> tuple[str, str]:
    req_id = new_req_id(SUBSCRIBE)
    return req_id, encode(SUBSCRIBE, req_id, {"bot_id": bot_id, "secret": secret})


def ping() -> tuple[str, str]:
    req_id = new_req_id(PING)
    return req_id, encode(PING, req_id)


def stream_reply(callback_req_id: str, content: str) -> str:
    """The whole answer to a callback as one finished stream: the bot's answers come whole from Rasa, so there is
    nothing to stream piece by piece (the protocol would allow it, with the same stream id and finish=false)."""
    stream = {"id": new_req_id("stream"), "finish": True, "content": content}
    return encode(RESPOND, callback_req_id, {"msgtype": "stream", "stream": stream})


def push(chat_id: str, content: str) -> tuple[str, str]:
    """A message the bot starts: to a member (their userid) or a group (its chatid); markdown is the only text kind."""
    req_id = new_req_id(SEND)
    return req_id, encode(SEND, req_id, {"chatid": chat_id, "msgtype": "markdown", "markdown": {"content": content}})
