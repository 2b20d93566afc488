"""The WeCom server API the adapter sends through: app messages, app group chats and group robot webhooks.

Async httpx rather than wechatpy's client: wechatpy's is built on blocking `requests` and has no robot
webhook, while everything here runs on the app's event loop. The access token (gettoken) is cached until
shortly before it expires and fetched again when WeCom says it is invalid or expired (40001/40014/42001),
then the call is made once more. Any errcode other than 0 raises `SendError`, retryable unless trying
again cannot help (an unknown user or chat, a malformed message).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from bot.channels.sender import SendError
from bot.channels.wecom.config import WeComConfig

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
RATE_LIMITED = frozenset({45009, 45033})
# Trying again cannot help: invalid user/chat, nobody to send to, no permission for this member, bad message.
PERMANENT_ERRORS = frozenset({40003, 40008, 40058, 44004, 45002, 60011, 81013, 86001, 86003, 93000})
# A token is dropped this long before WeCom's own expiry, so none is used as it runs out.
_TOKEN_MARGIN_SECONDS = 300.0


class WeComError(SendError):
    def __init__(self, what: str, errcode: int, errmsg: str) -> None:
        retryable = errcode not in PERMANENT_ERRORS
        super().__init__(f"WeCom {what}: errcode {errcode} {errmsg}".strip(), retryable=retryable)
        self.errcode = errcode


class WeComApi:
    def __init__(self, config: WeComConfig, client: httpx.AsyncClient | None = None) -> None:
        self._config = config
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.last_error: str | None = None
        # Why the last gettoken failed (None once one succeeds): the channel is down while it cannot get a token.
        self.token_error: str | None = None

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- token -----------------------------------------------------------------------------------------

    async def access_token(self, *, refresh: bool = False) -> str:
        async with self._token_lock:
            if refresh or self._token is None or time.monotonic() >= self._token_expires:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    async def _fetch_token(self) -> None:
        try:
            data = await self._request(
                "GET",
                f"{self._config.api_base}/cgi-bin/gettoken",
                "gettoken",
                params={"corpid": self._config.corp_id, "corpsecret": self._config.secret},
            )
            token = data.get("access_token")
            if not isinstance(token, str) or not token:
                raise SendError("WeCom gettoken: no access_token in the answer")
        except SendError as exc:
            self.token_error = str(exc)
            raise
        self.token_error = None
        expires_in = float(data.get("expires_in") or 7200)
        self._token = token
        self._token_expires = time.monotonic() + max(expires_in - _TOKEN_MARGIN_SECONDS, expires_in / 2)

    # --- calls -----------------------------------------------------------------------------------------

    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to an app API with the access token, fetching a new token once if WeCom says it is stale."""
        for attempt in (1, 2):
            token = await self.access_token(refresh=False)
            try:
                return await self._request(
                    "POST", f"{self._config.api_base}{path}", path, params={"access_token": token}, json=payload
                )
            except WeComError as exc:
                if exc.errcode not in TOKEN_ERRORS or attempt == 2:
                    raise
                log.info("WeCom access token refused (errcode %d): fetching a new one", exc.errcode)
                async with self._token_lock:
                    if self._token == token:  # nobody refreshed it meanwhile
                        self._token = None
        raise AssertionError("unreachable")

    async def send_to_user(self, user_id: str, content: str) -> None:
        data = await self.call(
            "/cgi-bin/message/send",
            {"touser": user_id, "msgtype": "text", "agentid": self._config.agent_id, "text": {"content": content}},
        )
        invalid = data.get("invaliduser") or ""
        if invalid:  # errcode 0 and still not delivered: the userid is unknown or outside the app's range
            raise SendError(f"WeCom message/send: invalid user {invalid}", retryable=False)

    async def send_to_appchat(self, chat_id: str, content: str) -> None:
        await self.call("/cgi-bin/appchat/send", {"chatid": chat_id, "msgtype": "text", "text": {"content": content}})

    async def send_to_robot(self, webhook_url: str, content: str, mentioned: list[str]) -> None:
        text: dict[str, Any] = {"content": content}
        if mentioned:
            text["mentioned_list"] = mentioned
        await self._request("POST", webhook_url, "robot webhook", json={"msgtype": "text", "text": text})

    async def _request(self, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.last_error = f"{what}: {type(exc).__name__}: {exc}"
            raise SendError(f"WeCom {what} unreachable: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            self.last_error = f"{what}: HTTP {response.status_code}"
            raise SendError(f"WeCom {what}: HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            self.last_error = f"{what}: not JSON"
            raise SendError(f"WeCom {what}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise SendError(f"WeCom {what}: unexpected answer {data!r:.200}")
        errcode = int(data.get("errcode") or 0)
        if errcode != 0:
            self.last_error = f"{what}: errcode {errcode} {data.get('errmsg', '')}"
            raise WeComError(what, errcode, str(data.get("errmsg", "")))
        self.last_error = None
        return data
