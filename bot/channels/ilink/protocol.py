"""The iLink bot HTTP protocol, as Tencent's own client speaks it (@tencent-weixin/openclaw-weixin 2.4.9, MIT).

JSON over HTTPS, every call a POST to `<base>/ilink/bot/<name>` except the QR status poll (a GET):
- `get_bot_qrcode?bot_type=3` → `{qrcode, qrcode_img_content}`: a login code and the URL its QR image encodes;
- `get_qrcode_status?qrcode=…[&verify_code=…]`, long-polled (~35 s) → `{status, bot_token, ilink_bot_id,
  baseurl, ilink_user_id, redirect_host}`; status is wait, scaned, confirmed, expired, scaned_but_redirect,
  need_verifycode, verify_code_blocked or binded_redirect;
- `getupdates {get_updates_buf}`, long-polled → `{ret, errcode, errmsg, msgs, get_updates_buf,
  longpolling_timeout_ms}`: the buffer is the cursor, sent back on the next call ("" on the first);
- `sendmessage {msg: {to_user_id, client_id, message_type: 2, message_state: 2, item_list, context_token}}`;
- `msg/notifystart`, `msg/notifystop`: the client going on and off line.
Calls with a bot token carry `AuthorizationType: ilink_bot_token`, `Authorization: Bearer <token>` and
`X-WECHAT-UIN` (a random uint32, in decimal, base64); all carry `iLink-App-Id` and `iLink-App-ClientVersion`,
and every body a `base_info`. Message ids are uint64 on the wire: Python's JSON reads them exactly, and they are
kept as strings. `ret`/`errcode` -14 means the bot token is stale; `ret` -2 on a send is a refusal (the reply
window closed, the per-message cap reached, too long, or "rate limited").

httpx, like the rest of the app's clients: the protocol is a handful of JSON calls, no SDK is needed.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from bot.channels.download import download_capped

# What the npm package 2.4.9 sends: its package.json `ilink_appid` and version 2.4.9 as 0x00MMNNPP.
APP_ID = "bot"
PROTOCOL_VERSION = "2.4.9"
CLIENT_VERSION = str((2 << 16) | (4 << 8) | 9)
BOT_TYPE = "3"
STALE_TOKEN = -14
REFUSED = -2
# Message types (WeixinMessage.message_type) and item types (MessageItem.type).
FROM_USER, FROM_BOT = 1, 2
TEXT, IMAGE, VOICE, FILE, VIDEO = 1, 2, 3, 4, 5
FINISHED = 2  # message_state


class ProtocolError(Exception):
    """The server answered something this client cannot read (not JSON, not an object, HTTP error)."""


class ApiError(Exception):
    """The server read the call and refused it: `ret`/`errcode` non-zero."""

    def __init__(self, call: str, ret: int, errmsg: str) -> None:
        super().__init__(f"iLink {call}: ret {ret} {errmsg}".strip())
        self.call, self.ret, self.errmsg = call, ret, errmsg

    @property
    def stale_token(self) -> bool:
        return self.ret == STALE_TOKEN

    @property
    def rate_limited(self) -> bool:
        return "rate limit" in self.errmsg.lower()


@dataclass(frozen=True)
class Updates:
    messages: list[Any]
    cursor: str
    next_timeout_seconds: float | None


def _uin() -> str:
    return base64.b64encode(str(secrets.randbits(32)).encode()).decode()


class IlinkApi:
    """One client per process; the bot token and base URL are passed per call (one binding per scanned person)."""

    def __init__(self, bot_agent: str, timeout: float, client: httpx.AsyncClient | None = None) -> None:
        self._base_info = {"channel_version": PROTOCOL_VERSION, "bot_agent": bot_agent}
        self._timeout = timeout
        # One long-poll per binding is open at all times: no cap on connections, or bindings would queue for one.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=5.0), limits=limits)

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- login -----------------------------------------------------------------------------------------

    async def bot_qrcode(self, base_url: str, bot_type: str, known_tokens: list[str]) -> tuple[str, str]:
        """A new login code and the URL its QR image encodes (the npm package shows it with qrcode-terminal)."""
        data = await self._call(
            "get_bot_qrcode", base_url, f"ilink/bot/get_bot_qrcode?bot_type={quote(bot_type)}",
            {"local_token_list": known_tokens[:10]}, token=None, base_info=False,
        )  # fmt: skip
        code, url = data.get("qrcode"), data.get("qrcode_img_content")
        if not isinstance(code, str) or not code or not isinstance(url, str) or not url:
            raise ProtocolError("iLink get_bot_qrcode: no qrcode or qrcode_img_content in the answer")
        return code, url

    async def qrcode_status(self, base_url: str, code: str, verify_code: str | None, timeout: float) -> dict[str, Any]:
        """The scan's state; long-polled by the server, so a client timeout means "still waiting"."""
        path = f"ilink/bot/get_qrcode_status?qrcode={quote(code, safe='')}"
        if verify_code:
            path += f"&verify_code={quote(verify_code, safe='')}"
        headers = {"iLink-App-Id": APP_ID, "iLink-App-ClientVersion": CLIENT_VERSION}
        try:
            response = await self._client.get(_url(base_url, path), headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            return {"status": "wait"}
        return self._parse("get_qrcode_status", response)

    # --- messages --------------------------------------------------------------------------------------

    async def updates(self, base_url: str, token: str, cursor: str, timeout: float) -> Updates:
        """The messages after `cursor` and the next cursor; a client timeout is an empty answer (a normal long-poll)."""
        try:
            data = await self._call(
                "getupdates", base_url, "ilink/bot/getupdates", {"get_updates_buf": cursor}, token=token, timeout=timeout
            )
        except httpx.TimeoutException:
            return Updates([], cursor, None)
        messages = data.get("msgs")
        if messages is None:
            messages = []
        if not isinstance(messages, list):
            raise ProtocolError(f"iLink getupdates: msgs is {type(messages).__name__}, not a list")
        new_cursor = data.get("get_updates_buf")
        if new_cursor is not None and not isinstance(new_cursor, str):
            raise ProtocolError("iLink getupdates: get_updates_buf is not a string")
        hint = data.get("longpolling_timeout_ms")
        next_timeout = hint / 1000 if isinstance(hint, int | float) and not isinstance(hint, bool) and hint > 0 else None
        return Updates(messages, new_cursor or cursor, next_timeout)

    async def send_text(self, base_url: str, token: str, to: str, text: str, context_token: str | None, client_id: str) -> str:
        """Send one finished text message; the server's message id ("" when it gives none)."""
        msg: dict[str, Any] = {
            "from_user_id": "",
            "to_user_id": to,
            "client_id": client_id,
            "message_type": FROM_BOT,
            "message_state": FINISHED,
            "item_list": [{"type": TEXT, "text_item": {"text": text}}],
        }
        if context_token:
            msg["context_token"] = context_token
        data = await self._call("sendmessage", base_url, "ilink/bot/sendmessage", {"msg": msg}, token=token)
        return str(data.get("message_id") or "")

    async def notify(self, base_url: str, token: str, *, online: bool) -> None:
        name = "notifystart" if online else "notifystop"
        await self._call(name, base_url, f"ilink/bot/msg/{name}", {}, token=token)

    async def download(self, url: str, max_bytes: int) -> bytes:
        """The file from WeChat's CDN; MediaRejected when larger than `max_bytes` or the URL is not valid."""
        return await download_capped(self._client, url, max_bytes)

    # --- the wire --------------------------------------------------------------------------------------

    async def _call(
        self, call: str, base_url: str, path: str, body: dict[str, Any], *, token: str | None,
        timeout: float | None = None, base_info: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        headers = {"Content-Type": "application/json", "iLink-App-Id": APP_ID, "iLink-App-ClientVersion": CLIENT_VERSION}
        if token is not None:
            headers |= {"AuthorizationType": "ilink_bot_token", "Authorization": f"Bearer {token}", "X-WECHAT-UIN": _uin()}
        payload = body | {"base_info": self._base_info} if base_info else body
        response = await self._client.post(
            _url(base_url, path), content=json.dumps(payload, ensure_ascii=False).encode(), headers=headers,
            timeout=timeout if timeout is not None else self._timeout,
        )  # fmt: skip
        data = self._parse(call, response)
        ret = _code(data.get("ret"))
        errcode = _code(data.get("errcode"))
        if ret or errcode:
            raise ApiError(call, ret or errcode, str(data.get("errmsg") or ""))
        return data

    @staticmethod
    def _parse(call: str, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise ProtocolError(f"iLink {call}: HTTP {response.status_code}")
        if not response.content.strip():
            return {}  # sendmessage may answer with an empty body (the npm client's tests do)
        try:
            data = json.loads(response.content)
        except ValueError:
            raise ProtocolError(f"iLink {call}: the answer is not JSON ({response.content[:80]!r})") from None
        if not isinstance(data, dict):
            raise ProtocolError(f"iLink {call}: the answer is {type(data).__name__}, not an object")
        return data


def _url(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}/{path}"


def _code(value: object) -> int:
    """A ret/errcode as an int; anything unreadable counts as a refusal of its own (-1), never as success."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return -1
    try:
        return int(value)
    except ValueError:
        return -1
