"""HTTP client for the Rasa server: NLU parse, the REST channel, and a peek at the conversation's tracker."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class RasaUnavailable(Exception):
    """Rasa could not be reached or failed; the caller holds the message for a retry."""


class RasaClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RasaUnavailable(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 500 or response.status_code in (404, 409):
            raise RasaUnavailable(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        response.raise_for_status()
        return response.json()

    async def parse(self, text: str) -> dict[str, Any]:
        """Intent and entities only, no dialogue state touched (used to decide whether to answer at all)."""
        return await self._request("POST", "/model/parse", json={"text": text})

    async def send(self, conversation_id: str, text: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """One user turn through Rasa's REST channel; returns every message the bot produced for it."""
        payload = {"sender": conversation_id, "message": text, "metadata": metadata}
        return await self._request("POST", "/webhooks/rest/webhook", json=payload) or []

    async def active_loop(self, conversation_id: str) -> str | None:
        """The form the conversation is in, if any (so the bot keeps listening for the answer)."""
        tracker = await self._request(
            "GET", f"/conversations/{quote(conversation_id, safe=':@~')}/tracker", params={"include_events": "NONE"}
        )
        loop = tracker.get("active_loop") or {}
        return loop.get("name")

    async def ready(self) -> bool:
        try:
            response = await self._http.get("/status")
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and bool(response.json().get("model_file"))
