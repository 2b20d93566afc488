"""HTTP client for the Rasa servers: NLU parse and one turn through the prepared REST channel.

`RASA_URL` may list several servers, comma-separated: requests take turns among them. A Rasa server works
one request at a time on its event loop, so on one machine a server per core (each single-threaded, see
rasa_process.start_rasa) serves more than one server with threads; they share trackers and conversation
locks in Redis, so any of them can take any turn. A server that refuses the connection (stopped, still
loading) is skipped; one that took the request and then failed is not retried elsewhere, since it may
have acted on the message.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx


class RasaUnavailable(Exception):
    """Rasa could not be reached or failed; the caller holds the message for a retry."""


def server_urls(setting: str) -> list[str]:
    """The Rasa servers a `RASA_URL` names (one, or several separated by commas)."""
    urls = [url.strip().rstrip("/") for url in setting.split(",") if url.strip()]
    if not urls:
        raise ValueError("RASA_URL names no Rasa server")
    return urls


class RasaClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.urls = server_urls(base_url)
        self._http = httpx.AsyncClient(timeout=timeout)
        self._turns = itertools.cycle(range(len(self.urls)))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        first = next(self._turns)
        for attempt in range(len(self.urls)):
            url = self.urls[(first + attempt) % len(self.urls)]
            try:
                response = await self._http.request(method, url + path, **kwargs)
            except httpx.ConnectError as exc:  # never reached the server: another may take it
                if attempt + 1 < len(self.urls):
                    continue
                raise RasaUnavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
            except httpx.HTTPError as exc:
                raise RasaUnavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
            if response.status_code >= 500 or response.status_code in (404, 409):
                raise RasaUnavailable(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
            response.raise_for_status()
            return response.json()
        raise AssertionError("unreachable: the loop returns or raises")

    async def parse(self, text: str) -> dict[str, Any]:
        """Intent and entities only, no dialogue state touched (used to decide whether to answer at all)."""
        return await self._request("POST", "/model/parse", json={"text": text})

    async def send(
        self, conversation_id: str, text: str, metadata: dict[str, Any], parse_data: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """One user turn; returns every message the bot produced for it.

        Through rasa_channels.prepared_rest: given the parse of this text (from `parse`), Rasa skips its NLU.
        """
        payload: dict[str, Any] = {"sender": conversation_id, "message": text, "metadata": metadata}
        if parse_data is not None:
            payload["parse_data"] = parse_data
        return await self._request("POST", "/webhooks/gridbot/webhook", json=payload) or []

    async def ready(self) -> bool:
        """Any server has its model loaded (requests skip those still loading: they refuse connections)."""
        for url in self.urls:
            try:
                response = await self._http.get(url + "/status")
            except httpx.HTTPError:
                continue
            if response.status_code == 200 and bool(response.json().get("model_file")):
                return True
        return False
