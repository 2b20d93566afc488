"""Operators' basics: the .env file and its example, log level and JSON lines, /metrics, /readyz, and demo data kept
out of a database the operator named."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from typer.testing import CliRunner

from bot import app_process
from bot.auth.models import Account
from bot.cli import app as cli
from bot.demo import is_embedded_database, prepare_database
from bot.env_example import EXAMPLE, generate
from bot.env_file import load_env_file
from bot.settings import ENV_FILE, PROJECT_ROOT, Settings
from grid.geography import Region
from storage.engine import make_engine, make_session_factory, unit_of_work
from storage.migrate import upgrade
from tests.servers import Chat, app_server, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- .env and .env.example -------------------------------------------------------------------------


def test_the_env_file_is_read_and_the_environment_wins_over_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# an operator's file\nDATABASE_URL=postgresql://gridbot@db.internal/gridbot\nLOG_FORMAT=json\n"
        "APP_PORT=9001\nREQUEST_INTENTS='[\"ask_policy\"]'\n",
        encoding="utf-8",
    )
    for name in ("DATABASE_URL", "LOG_FORMAT", "REQUEST_INTENTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_PORT", "9100")

    settings = Settings(_env_file=env)  # type: ignore[call-arg]

    assert settings.database_url == "postgresql://gridbot@db.internal/gridbot"
    assert settings.log_format == "json" and settings.request_intents == ("ask_policy",)
    assert settings.app_port == 9100  # set in the environment: the file does not override it
    assert Settings.model_config["env_file"] == ENV_FILE == PROJECT_ROOT / ".env"  # what Settings() reads


def test_gridbot_commands_put_the_env_file_into_their_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the Rasa server `gridbot run` starts inherits, and what is read from os.environ (GRIDBOT_CACHE…)."""
    env = tmp_path / ".env"
    env.write_text("GRIDBOT_TEST_FROM_FILE=file\nGRIDBOT_TEST_KEPT=file\n", encoding="utf-8")
    monkeypatch.setenv("GRIDBOT_TEST_FROM_FILE", "placeholder")
    monkeypatch.delenv("GRIDBOT_TEST_FROM_FILE")  # unset now; restored (unset) after the test
    monkeypatch.setenv("GRIDBOT_TEST_KEPT", "environment")

    assert load_env_file(env) is True
    assert os.environ["GRIDBOT_TEST_FROM_FILE"] == "file"
    assert os.environ["GRIDBOT_TEST_KEPT"] == "environment"
    assert load_env_file(tmp_path / "missing") is False


def test_env_example_lists_every_setting_and_is_what_the_settings_give() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == generate(), "run `python -m bot.env_example`"
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    listed = [line[2:].split("=", 1)[0] for line in lines if line.startswith("# ") and "=" in line and line[2:3].isupper()]
    assert sorted(name for name in listed if name.lower() in Settings.model_fields) == sorted(
        name.upper() for name in Settings.model_fields
    )


def test_env_example_uncommented_gives_the_defaults(tmp_path: Path) -> None:
    """Each line, uncommented, is the default as the environment spells it (JSON lists quoted, paths, booleans)."""
    values = [
        line[2:].replace("<project>", str(PROJECT_ROOT))
        for line in EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.startswith("# ") and line[2:].split("=", 1)[0].lower() in Settings.model_fields
    ]
    env = tmp_path / ".env"
    env.write_text("\n".join(values) + "\n", encoding="utf-8")
    uncommented = Settings(_env_file=env).model_dump()  # type: ignore[call-arg]
    defaults = Settings(_env_file=None).model_dump()  # type: ignore[call-arg]
    differing = {name: value for name, value in uncommented.items() if value != defaults[name]}
    # An unset text setting reads "" once uncommented (an unset number or path is unset again); left commented out,
    # it stays unset. Only those differ.
    assert differing == {name: "" for name, field in Settings.model_fields.items() if field.default is None
                         and str in get_args(field.annotation) and os.environ.get(name.upper()) is None}  # fmt: skip


# --- logs ------------------------------------------------------------------------------------------


def test_log_format_json_gives_one_json_object_per_line_uvicorn_included(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'gridbot.db'}"
    upgrade(database)
    port, log_file = free_port(), tmp_path / "app.log"
    env = {
        "DATABASE_URL": database,
        "RASA_URL": f"http://127.0.0.1:{free_port()}",
        "KB_EMBEDDING_MODEL": "none",
        "LOG_FORMAT": "JSON",
        "LOG_LEVEL": "info",
        "APP_ACCESS_LOG": "true",
    }
    with app_process.app_process(port, env, log_file) as app:
        assert httpx.get(f"{app.url}/metrics").status_code == 200

    lines = [line for line in log_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line parses
    assert all({"time", "level", "logger", "message", "process"} <= set(record) for record in records)
    assert any(r["logger"] == "uvicorn.error" and "Application startup complete" in r["message"] for r in records)
    assert any(r["logger"] == "uvicorn.access" and "GET /metrics" in r["message"] for r in records)


def test_log_level_hides_less_severe_records(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'gridbot.db'}"
    upgrade(database)
    port, log_file = free_port(), tmp_path / "app.log"
    env = {"DATABASE_URL": database, "RASA_URL": f"http://127.0.0.1:{free_port()}", "KB_EMBEDDING_MODEL": "none",
           "LOG_LEVEL": "WARNING"}  # fmt: skip
    with app_process.app_process(port, env, log_file):
        pass
    text = log_file.read_text(encoding="utf-8")
    assert "Application startup complete" not in text and " INFO " not in text
    assert " WARNING " in text  # the generated tokens are still announced (bot/rasa_tokens.py)


# --- /metrics and /readyz --------------------------------------------------------------------------


def _scrape(url: str) -> tuple[set[str], Samples]:
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(response.text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for family in families for s in family.samples}
    return {family.name for family in families}, samples


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


NAMED_SERIES = {
    "gridbot_messages_in",
    "gridbot_messages_out",
    "gridbot_turn_seconds",
    "gridbot_rasa_errors",
    "gridbot_tickets",
    "gridbot_tickets_overdue",
    "gridbot_queue_depth",
    "process_resident_memory_bytes",
}


@pytest.fixture
def app_without_rasa(database_url: str) -> Iterator[str]:
    """The real app on this run's database with no Rasa server where RASA_URL points and no Redis."""
    settings = Settings(database_url=database_url, rasa_url=f"http://127.0.0.1:{free_port()}", app_port=free_port())
    with app_server(settings) as url:
        yield url


def test_metrics_count_a_message_held_while_rasa_is_down(app_without_rasa: str) -> None:
    names, before = _scrape(app_without_rasa)
    assert names >= NAMED_SERIES
    queues = {dict(labels)["queue"] for name, labels in before if name == "gridbot_queue_depth"}
    assert queues == {"outgoing", "notice", "outbox", "deferred"}

    chat = Chat(app_without_rasa)
    sender = f"resident-{uuid.uuid4().hex[:8]}"
    replies = chat.say("高龄补贴怎么申请", group="demo-grid-1", sender=sender, name="居民", mention=True)
    chat.http.close()
    assert len(replies) == 1  # "稍后再试": the message is held

    _, after = _scrape(app_without_rasa)
    assert _delta(before, after, "gridbot_messages_in_total", channel="webchat", outcome="held") == 1
    assert _delta(before, after, "gridbot_rasa_errors_total", reason="connect") == 1
    assert _delta(before, after, "gridbot_turn_seconds_count", channel="webchat") == 1
    assert _delta(before, after, "gridbot_messages_out_total", channel="webchat", outcome="sent") == 1
    assert _delta(before, after, "gridbot_queue_depth", queue="deferred", status="held") == 1


def test_readyz_names_what_is_down_beside_liveness(database_url: str) -> None:
    """No Redis configured, Rasa and the database unreachable: not ready, naming both; /healthz still answers."""
    settings = Settings(
        database_url=f"postgresql://127.0.0.1:{free_port()}/nothing", rasa_url=f"http://127.0.0.1:{free_port()}",
        app_port=free_port(),
    )  # fmt: skip
    with app_server(settings) as url:
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready" and body["failed"] == ["database", "rasa"]
    assert body["checks"]["redis"] == "not configured"


@pytest.mark.rasa
def test_a_message_through_the_app_moves_the_counters_and_its_ticket_the_gauges(
    app_url: str, chat: Chat, resident: tuple[str, str]
) -> None:
    sender, name = resident
    _, before = _scrape(app_url)

    replies = chat.say("27号楼门口的路灯不亮了", group="demo-grid-1", sender=sender, name=name, mention=True)

    _, after = _scrape(app_url)
    assert replies
    assert _delta(before, after, "gridbot_messages_in_total", channel="webchat", outcome="answered") == 1
    assert _delta(before, after, "gridbot_turn_seconds_count", channel="webchat") == 1
    assert _delta(before, after, "gridbot_turn_seconds_sum", channel="webchat") > 0
    assert _delta(before, after, "gridbot_messages_out_total", channel="webchat", outcome="sent") >= len(replies)
    tickets = sum(_delta(before, after, "gridbot_tickets", state=state) for state in ("submitted", "dispatched"))
    assert tickets == 1  # the report filed one ticket, read from the database at scrape time


@pytest.mark.rasa
def test_readyz_is_200_when_database_redis_and_rasa_answer(app_url: str) -> None:
    ready = httpx.get(f"{app_url}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "failed": [], "checks": {"database": "ok", "redis": "ok", "rasa": "ok"}}


@pytest.mark.rasa
def test_readyz_is_503_naming_redis_when_it_is_down(database_url: str, rasa_url: str) -> None:
    settings = Settings(
        database_url=database_url, redis_url=f"redis://127.0.0.1:{free_port()}/0", rasa_url=rasa_url, app_port=free_port()
    )
    with app_server(settings) as url:
        ready = httpx.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 503
    body = ready.json()
    assert body["failed"] == ["redis"] and body["checks"]["database"] == body["checks"]["rasa"] == "ok"
    assert body["checks"]["redis"].startswith("unreachable")


# --- demo data -------------------------------------------------------------------------------------


def test_run_loads_no_demo_data_into_a_database_the_operator_named(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'city.db'}"
    assert not is_embedded_database(database)

    assert prepare_database(database, demo=None) is False

    engine = make_engine(database)
    try:
        with unit_of_work(make_session_factory(engine)) as session:  # migrated, and empty
            assert session.scalar(select(func.count()).select_from(Account)) == 0
            assert session.scalar(select(func.count()).select_from(Region)) == 0
    finally:
        engine.dispose()


def test_only_the_embedded_default_counts_as_the_demo_database() -> None:
    assert is_embedded_database(Settings.model_fields["database_url"].default)
    assert is_embedded_database(f"sqlite:///{PROJECT_ROOT / 'var' / '..' / 'var' / 'gridbot.db'}")
    assert not is_embedded_database("postgresql://gridbot@localhost/gridbot")
    assert not is_embedded_database("sqlite:///:memory:")


def test_run_offers_demo_explicitly() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--demo" in result.output and "--no-demo" in result.output
