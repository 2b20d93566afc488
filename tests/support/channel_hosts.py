"""The app with one push channel, hosted for a channel's tests: a database of the module's own and the app served
from a thread whose event loop the test can reach.

The wechaty, WeCom smart robot and iLink tests run the same way — no Rasa (messages are held, people told to
wait), the notice tests' map on SQLite and on PostgreSQL, the app connected to a peer that plays the platform —
so the host and its two fixtures are written once, here; each module names its channel, its peer and its settings.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from bot.app import create_app
from bot.channels.base import Channel, HealthStatus
from bot.runtime import Services
from bot.settings import Settings
from storage.engine import make_engine, make_session_factory
from tests.notice_world import notice_database

T = TypeVar("T")
H = TypeVar("H", bound="AppHost")


class AppHost:
    """The app served from a thread with an event loop the test can reach; `channel_name` is the channel tested."""

    channel_name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.loop = asyncio.new_event_loop()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=settings.app_port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.server.serve(),), daemon=True)
        self.url = f"http://127.0.0.1:{settings.app_port}"

    def __enter__(self: H) -> H:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the channel host app did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.loop.close()

    @property
    def services(self) -> Services:
        return self.app.state.services

    @property
    def channel(self) -> Channel:
        return self.services.channels.get(self.channel_name)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the app's own loop (its Redis client and the channel's connection live there)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def wait_health(self, status: HealthStatus, timeout: float = 30) -> list[HealthStatus]:
        """Poll the channel's health until it is `status`; every status seen on the way, in order."""
        seen: list[HealthStatus] = []
        deadline = time.monotonic() + timeout
        while True:
            current = self.channel.health().status
            if not seen or seen[-1] is not current:
                seen.append(current)
            if current is status:
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.channel_name} health stayed {seen}, never {status.value}: {self.channel.health()}")
            time.sleep(0.02)


def own_database(folder: str) -> Any:
    """The module fixture `own_db`: the notice tests' map (grids grid-1…5) in a database of the module's own, on
    each backend (every test binds or maps people and groups of its own); `(url, session factory)`."""

    @pytest.fixture(scope="module", params=["sqlite", "postgresql"], name="own_db")
    def own_db(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[tuple[str, sessionmaker[Session]]]:
        with notice_database(request.param, tmp_path_factory.mktemp(folder)) as url:
            engine = make_engine(url)
            yield url, make_session_factory(engine)
            engine.dispose()

    return own_db


def app_host(host: type[H], settings: Callable[[str, Any, Path], Settings], *, wait_up: bool = True) -> Any:
    """The fixture `host`: a `host` app on `own_db`, with `settings(database url, peer, tmp_path)`; with `wait_up`,
    yielded once its channel is connected to the module's `peer`."""

    @pytest.fixture(name="host")
    def channel_host(own_db: tuple[str, sessionmaker[Session]], peer: Any, tmp_path: Path) -> Iterator[H]:
        with host(settings(own_db[0], peer, tmp_path)) as app:
            if wait_up:
                app.wait_health(HealthStatus.UP)
            yield app

    return channel_host
