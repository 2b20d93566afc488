"""The app served from a background thread of the current process: used by the tests and the benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from bot.app import create_app
from bot.ports import free_port
from bot.settings import Settings

__all__ = ["app_server", "free_port"]


@contextmanager
def app_server(settings: Settings) -> Iterator[str]:
    """Serve the real app on settings.app_port until the block ends; yields its base URL.

    The tests and benches drive the bot through the web chat, so it is on here unless the settings say otherwise
    explicitly (LOCAL_CHAT_ENABLED, or the argument): a deployment's `gridbot serve` has it off by default.
    """
    if "local_chat_enabled" not in settings.model_fields_set:
        settings = settings.model_copy(update={"local_chat_enabled": True})
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=settings.app_port, log_level="warning", lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("app server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{settings.app_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
