"""The callback URL set in the WeCom admin console: /channels/wecom/callback (open: WeCom signs, no login).

GET is the console's URL check (echo the decrypted echostr). POST is a message or event: 200 with an empty
body as soon as it is verified (WeCom's documented "no passive reply"; the answer goes out through the API),
403 when the signature, the timestamp or the nonce says it is not a fresh request from WeCom, 413 for a body over
MAX_BODY_BYTES, 400 when the body cannot be read, 503 when a genuine message cannot be stored now (database down:
WeCom sends it again).
Never 500 for anything a caller sends.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response

from bot.channels.registry import UnknownChannel
from bot.channels.wecom.channel import MAX_BODY_BYTES, WeComChannel
from bot.channels.wecom.inbound import CHANNEL
from bot.channels.wecom.security import CallbackMalformed, CallbackRejected, CallbackUnavailable

router = APIRouter(prefix="/channels/wecom", tags=["channels"])


def _channel(request: Request) -> WeComChannel:
    try:
        channel = request.app.state.services.channels.get(CHANNEL)
    except UnknownChannel:
        raise HTTPException(404, "the WeCom channel is not configured here (WECOM_* settings)") from None
    assert isinstance(channel, WeComChannel)
    return channel


ChannelDep = Annotated[WeComChannel, Depends(_channel)]
Signature = Annotated[str, Query(max_length=128)]


def _params(**values: str) -> None:
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise HTTPException(400, f"missing query parameter(s): {', '.join(missing)}")


@router.get("/callback", response_class=PlainTextResponse)
async def verify_url(
    channel: ChannelDep,
    msg_signature: Signature = "",
    timestamp: Signature = "",
    nonce: Signature = "",
    echostr: Annotated[str, Query(max_length=4096)] = "",
) -> PlainTextResponse:
    """URL verification by the admin console: the decrypted echostr, as plain text."""
    _params(msg_signature=msg_signature, timestamp=timestamp, nonce=nonce, echostr=echostr)
    try:
        echo = await channel.verify_url(msg_signature, timestamp, nonce, echostr)
    except CallbackRejected as exc:
        raise HTTPException(403, f"rejected: {exc.reason}") from None
    except CallbackMalformed as exc:
        raise HTTPException(400, f"malformed: {exc}") from None
    return PlainTextResponse(echo)


@router.post("/callback")
async def receive(
    request: Request,
    channel: ChannelDep,
    msg_signature: Signature = "",
    timestamp: Signature = "",
    nonce: Signature = "",
) -> Response:
    """A message or event: verified, acknowledged at once, handled in the background."""
    _params(msg_signature=msg_signature, timestamp=timestamp, nonce=nonce)
    # bot/api/guards.py holds every body to this limit already; checked here too so the route is safe on its own.
    too_large = HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes", headers={"Connection": "close"})
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large  # refused before reading it
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    try:
        await channel.receive_callback(msg_signature, timestamp, nonce, bytes(body))
    except CallbackRejected as exc:
        raise HTTPException(403, f"rejected: {exc.reason}") from None
    except CallbackMalformed as exc:
        raise HTTPException(400, f"malformed: {exc}") from None
    except CallbackUnavailable as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    return Response(status_code=200)
