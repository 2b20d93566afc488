"""HTTP client for the Rasa servers: NLU parse and one turn through the prepared REST channel.

`RASA_URL` may list several servers, comma-separated: requests take turns among them. A Rasa server works
one request at a time on its event loop, so on one machine a server per core (each single-threaded, see
rasa_process.start_rasa) serves more than one server with threads; they share trackers and conversation
locks in Redis, so any of them can take any turn. A server that refuses the connection (stopped, still
loading) is skipped; one that took the request and then failed is not retried elsewhere, since it may
have acted on the message.

Every message the bot hears makes one call here, so the client is aiohttp's: its C HTTP parser costs
~0.2 ms of CPU per call where httpx took ~0.7 ms (measured on this machine against a local server), a
quarter of the app's CPU on a turn. A session belongs to the event loop it was made on, so one is kept per
running loop (the app has one; tests and CLIs may run several in turn).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp

from bot.metrics import RASA_ERRORS
from bot.rasa_tokens import known_rasa_token


class RasaUnavailable(Exception):
    """Rasa could not be reached or failed; the caller holds the message for a retry."""


class RasaRequestRejected(Exception):
    """Rasa answered 4xx (other than 404/409): the request itself is wrong, so it is not held for a retry."""


def server_urls(setting: str) -> list[str]:
    """The Rasa servers a `RASA_URL` names (one, or several separated by commas)."""
    urls = [url.strip().rstrip("/") for url in setting.split(",") if url.strip()]
    if not urls:
        raise ValueError("RASA_URL names no Rasa server")
    return urls


class RasaClient:
    def __init__(
        self,
        base_url: str,
        timeout: float = 30.0,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
        token: str | None = None,
    ) -> None:
        """`trace_configs`: aiohttp's request hooks (what is sent where), for diagnostics and tests.

        `token`: Rasa's API token (`rasa run --auth-token`), sent as `?token=` on every request, the turns through
        the project's channel included (rasa_ext.channels.prepared_rest checks it too). Default: RASA_AUTH_TOKEN, which
        is also the token this process started Rasa with (bot.rasa_tokens), looked up per request: a Rasa started
        after this client (a test restarting it) is still reached.
        """
        self.urls = server_urls(base_url)
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._trace_configs = trace_configs
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._turns = itertools.cycle(range(len(self.urls)))

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            for stale in [other for other in self._sessions if other.is_closed()]:
                del self._sessions[stale]  # its loop is gone: nothing can use or close that session any more
            session = self._sessions[loop] = aiohttp.ClientSession(timeout=self._timeout, trace_configs=self._trace_configs)
        return session

    async def aclose(self) -> None:
        """Close this loop's session (the others' loops have ended or will close their own)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    def _params(self) -> dict[str, str] | None:
        token = self._token or known_rasa_token()
        return {"token": token} if token else None

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        first = next(self._turns)
        session = self._session()
        for attempt in range(len(self.urls)):
            url = self.urls[(first + attempt) % len(self.urls)]
            try:
                async with session.request(method, url + path, params=self._params(), **kwargs) as response:
                    status, body = response.status, await response.read()
            except aiohttp.ClientConnectorError as exc:  # never reached the server: another may take it
                if attempt + 1 < len(self.urls):
                    continue
                RASA_ERRORS.labels("connect").inc()
                raise RasaUnavailable(f"{method} {path}: cannot connect ({exc.__class__.__name__}): {exc}") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                RASA_ERRORS.labels("timeout" if isinstance(exc, TimeoutError) else "client_error").inc()
                raise RasaUnavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
            if status >= 500 or status in (404, 409):
                RASA_ERRORS.labels("http_5xx" if status >= 500 else "http_4xx").inc()
                raise RasaUnavailable(f"{method} {path}: HTTP {status} {body[:200].decode(errors='replace')}")
            if status >= 400:  # our request was wrong: retrying it later would fail the same way
                RASA_ERRORS.labels("http_4xx").inc()
                raise RasaRequestRejected(f"{method} {path}: HTTP {status} {body[:200].decode(errors='replace')}")
            try:
                return json.loads(body)
            except ValueError as exc:
                RASA_ERRORS.labels("not_json").inc()
                raise RasaUnavailable(f"{method} {path}: the answer is not JSON: {body[:200]!r}") from exc
        raise AssertionError("unreachable: the loop returns or raises")

    async def parse(self, text: str) -> dict[str, Any]:
        """Intent and entities only, no dialogue state touched (used to decide whether to answer at all)."""
        return await self._request("POST", "/model/parse", json={"text": text})

    async def send(
        self, conversation_id: str, text: str, metadata: dict[str, Any], parse_data: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """One user turn; returns every message the bot produced for it.

        Through rasa_ext.channels.prepared_rest: given the parse of this text (from `parse`), Rasa skips its NLU.
        """
        payload: dict[str, Any] = {"sender": conversation_id, "message": text, "metadata": metadata}
        if parse_data is not None:
            payload["parse_data"] = parse_data
        return await self._request("POST", "/webhooks/gridbot/webhook", json=payload) or []

    async def ready(self) -> bool:
        """Any server has its model loaded (requests skip those still loading: they refuse connections)."""
        session = self._session()
        for url in self.urls:
            try:
                async with session.get(url + "/status", params=self._params()) as response:
                    if response.status == 200 and bool((await response.json(content_type=None)).get("model_file")):
                        return True
            except (aiohttp.ClientError, TimeoutError, ValueError):
                continue
        return False
