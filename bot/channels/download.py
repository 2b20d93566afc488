"""Fetching an inbound picture with a size cap, as the channels do while the platform's link still works."""

from __future__ import annotations

import httpx

from bot.media_store import MediaRejected


async def download_capped(client: httpx.AsyncClient, url: str, max_bytes: int) -> bytes:
    """The content at `url`; MediaRejected as soon as it is larger than `max_bytes` (nothing more is read) or when
    the URL cannot even be requested (httpx.InvalidURL is no HTTPError, so callers catching those would miss it).
    An HTTP error status raises httpx.HTTPStatusError."""
    try:
        async with client.stream("GET", url) as response:
            response.raise_for_status()
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise MediaRejected(f"the file is larger than {max_bytes} bytes")
            return b"".join(chunks)
    except httpx.InvalidURL as exc:
        raise MediaRejected(f"the download URL is not valid: {exc}") from None
