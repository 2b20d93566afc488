"""The helpers the long-lived channels share (bot/channels/backoff.py, download.py, sent_keys.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest

from bot.channels.backoff import backoff
from bot.channels.download import download_capped
from bot.channels.sent_keys import SentKeys
from bot.media_store import MediaRejected


def test_backoff_doubles_to_its_cap_and_survives_an_outage_of_thousands_of_failures() -> None:
    assert [backoff(n, 1.0, 60.0, jitter=0.0) for n in (0, 1, 2, 3, 7, 8)] == [1.0, 1.0, 2.0, 4.0, 60.0, 60.0]
    for failures in (1025, 5000, 10**9):  # 1.0 * 2 ** 1024 would be an OverflowError, ending the task for good
        assert backoff(failures, 1.0, 60.0, jitter=0.0) == 60.0
        assert 48.0 <= backoff(failures, 1.0, 60.0) <= 72.0  # ±20 % by default


def test_the_channels_backoffs_are_capped() -> None:
    from bot.channels.ilink.config import IlinkConfig
    from bot.channels.wechaty.adapter import WechatyConfig
    from bot.settings import Settings

    wechaty = WechatyConfig(token="t", endpoint="h:1", bot_name="b", reconnect_first_seconds=1.0, reconnect_max_seconds=60.0)
    ilink = IlinkConfig.from_settings(Settings(ilink_enabled=True))
    assert ilink is not None
    assert wechaty.backoff(5000) <= 72.0
    assert ilink.backoff(5000) <= ilink.retry_max_seconds * 1.2


def test_sent_keys_forget_the_oldest_first() -> None:
    keys = SentKeys(kept=3)
    for key in "abcd":
        keys.add(key)
    assert "a" not in keys and all(k in keys for k in "bcd") and len(keys) == 3
    keys.add("b")  # seen again: now the newest
    keys.add("e")
    assert "c" not in keys and "b" in keys
    keys.discard("b")
    keys.discard("never")
    assert "b" not in keys and len(keys) == 2


class _Files(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {"/small": b"x" * 100, "/large": b"y" * 100_000}

    def do_GET(self) -> None:
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _download(url: str, max_bytes: int) -> bytes:
    async def run() -> bytes:
        async with httpx.AsyncClient(timeout=10) as client:
            return await download_capped(client, url, max_bytes)

    return asyncio.run(run())


def test_download_capped_takes_a_file_within_the_cap_and_refuses_a_larger_one(files: str) -> None:
    assert _download(f"{files}/small", 100) == b"x" * 100
    with pytest.raises(MediaRejected, match="larger than 1000 bytes"):
        _download(f"{files}/large", 1000)
    with pytest.raises(httpx.HTTPStatusError):
        _download(f"{files}/missing", 1000)


def test_a_download_url_that_is_not_valid_is_a_clear_refusal_not_a_stray_error() -> None:
    with pytest.raises(MediaRejected, match="not valid"):
        _download("http://[::1/picture.jpg", 1000)  # httpx.InvalidURL: "Invalid port"
