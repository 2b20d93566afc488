"""Fixtures: databases (SQLite and PostgreSQL), real Redis, the trained Rasa server and the live app."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from bot import rasa_process
from bot.demo import load_demo
from bot.rasa_tokens import ACTION_TOKEN_HEADER, action_token, rasa_token
from bot.settings import Settings
from grid.geography import Grid, Region, Worker
from storage.engine import make_engine, make_session_factory, unit_of_work
from tests.areas import Area
from tests.servers import Chat, app_server, free_port, fresh_postgres
from tests.support.tiers import mark_tiers, unit_guard

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets its tier marker — unit, integration or e2e — from what it uses (tests/support/tiers.py)."""
    mark_tiers(items)


_running = {"test": ""}


def pytest_runtest_logstart(nodeid: str) -> None:
    _running["test"] = nodeid


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Iterator[None]:
    """A run of the unit tier alone (`make test-fast`) refuses subprocesses and the test Redis and PostgreSQL; a
    refusal the code under test swallowed still fails the run, naming the test."""
    if (session.config.option.markexpr or "").strip() != "unit":
        yield
        return
    with unit_guard(REDIS_URL, POSTGRES_URL, lambda: _running["test"]) as attempts:
        yield
    if attempts:
        session.testsfailed += 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "unit tests that reached for a service (tests/support/tiers.py)", red=True)
            for attempt in attempts:
                reporter.write_line(attempt)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database with the demo data, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'gridbot.db'}"
        _prepare(url)
        yield url
    else:
        with fresh_postgres(POSTGRES_URL) as url:
            _prepare(url)
            yield url


def _prepare(url: str) -> None:
    load_demo(url, updated_by="test")


@pytest.fixture(scope="session")
def session_factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def app_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def rasa_url(app_port: int, redis_client: redis.Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Rasa server trained from this repo's data (cached by hash), tracker and lock store in real Redis."""
    model = rasa_process.ensure_model()
    port = free_port()
    folder = tmp_path_factory.mktemp("rasa")
    # A key prefix of its own: runs sharing this Redis (a developer's and CI's) never see each other's trackers.
    endpoints = rasa_process.write_endpoints(
        folder / "endpoints.yml",
        f"http://127.0.0.1:{app_port}/webhook",
        REDIS_URL,
        key_prefix=f"gridbottest{uuid.uuid4().hex[:8]}",
        token=action_token(),
    )
    log_file = folder / "rasa.log"
    process = rasa_process.start_rasa(model, port, endpoints, log_file, auth_token=rasa_token())
    url = f"http://127.0.0.1:{port}"
    try:
        rasa_process.wait_ready(url, process, timeout=240)
    except Exception:
        process.kill()
        raise RuntimeError(f"rasa failed to start:\n{log_file.read_text()[-4000:]}") from None
    yield url
    process.terminate()
    try:
        process.wait(timeout=30)
    except Exception:
        process.kill()


@pytest.fixture(scope="session")
def app_url(database_url: str, rasa_url: str, app_port: int) -> Iterator[str]:
    """The live app on the port Rasa's action endpoint points at, backed by this run's database.

    The tests chat through the web chat, so it is on; Rasa and the app share this process's secrets
    (bot/rasa_tokens.py): rasa_url's endpoints carry the action token the app checks, and the app's client sends
    the API token that Rasa was started with.
    """
    settings = Settings(
        database_url=database_url, redis_url=REDIS_URL, rasa_url=rasa_url, app_port=app_port, local_chat_enabled=True
    )
    with app_server(settings) as url:
        yield url


@pytest.fixture
def chat(app_url: str) -> Iterator[Chat]:
    client = Chat(app_url)
    yield client
    client.http.close()


@pytest.fixture
def resident() -> tuple[str, str]:
    """A fresh resident id per test, so Rasa conversations never carry over between tests."""
    return f"resident-{uuid.uuid4().hex[:8]}", "居民小王"


# --- accounts (docs/security.md): the API needs a logged-in account; these make bearer headers on the shared database ---


@pytest.fixture(scope="session")
def admin_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    """Authorization headers of the demo admin (every demo database has it)."""
    from tests.accounts import headers_for

    return headers_for(session_factory, "admin")


@pytest.fixture(scope="module")
def webhook(database_url: str) -> Iterator[httpx.Client]:
    """The app's action endpoint (/webhook) as Rasa calls it, on each database, with no Rasa server: tests of
    actions set the intent, entities and metadata Rasa would send (tests.servers.action_call)."""
    settings = Settings(
        database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port(), kb_embedding_model="none"
    )
    with (
        app_server(settings) as url,
        httpx.Client(base_url=url, timeout=30, headers={ACTION_TOKEN_HEADER: action_token()}) as client,
    ):
        yield client


@pytest.fixture
def area(session_factory: sessionmaker[Session]) -> Area:
    tag = uuid.uuid4().hex[:8]
    found = Area(grid=f"grid-area-{tag}", worker=f"worker-area-{tag}", lead=f"lead-area-{tag}")
    with unit_of_work(session_factory) as session:
        session.add(Region(code=f"community-area-{tag}", name=f"测试社区{tag}", level="community"))
        session.flush()
        session.add(Grid(code=found.grid, name=f"测试网格{tag}", community_code=f"community-area-{tag}"))
        session.flush()
        session.add_all(
            [
                Worker(id=found.worker, name="周网格", grid_code=found.grid, role="worker"),
                Worker(id=found.lead, name="吴书记", grid_code=found.grid, role="lead"),
            ]
        )
    return found
