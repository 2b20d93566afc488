"""HTTP client for the Rasa server: NLU parse and one turn through the prepared REST channel."""

from __future__ import annotations

from typing import Any

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
        try:
            response = await self._http.get("/status")
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and bool(response.json().get("model_file"))
