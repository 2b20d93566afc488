"""Settings are checked when they load: a structured setting (JSON, a list, a time) that cannot be used stops
construction naming its variable, `gridbot` says so and exits, and secrets never show in repr or logs."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from datetime import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from bot import rasa_tokens
from bot.cli import app as cli
from bot.logging_setup import formatter_for, install_redaction
from bot.settings import PROJECT_ROOT, Settings, get_settings

# (variable, bad value, what the error says besides the variable's name)
BAD_VALUES = [
    ("WEBHOOK_TARGETS", "[{", "Invalid JSON"),
    ("WEBHOOK_TARGETS", '[{"name": "city", "url": "not a url", "secret": "s"}]', "0.url"),
    ("NOTICE_RATE_LIMITS", "{not json", "JSON"),
    ("NOTICE_RATE_LIMITS", '{"webchat": {"per_minute": 3}}', "per_minute"),
    ("NOTICE_RATE_LIMITS", '{"webchat": {"per_account": "many"}}', "per_account"),
    ("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.x", "10.0.0.x"),
    ("WECOM_ROBOTS", '["not a map"]', "group ids"),
    ("MORNING_DIGEST_AT", "8点", "HH:MM"),
]
SECRET = "s3cr3t-never-printed"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No setting of the structured kind from the caller's environment, and no cached settings either side."""
    for name in {variable for variable, _, _ in BAD_VALUES} | {"OPEN311_API_KEYS", "WECOM_SECRET"}:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.mark.parametrize(("variable", "value", "says"), BAD_VALUES)
def test_a_bad_structured_value_stops_construction_naming_it(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ValidationError) as err:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert variable in str(err.value) and says in str(err.value)


def test_the_documented_formats_load_typed(clean_env: pytest.MonkeyPatch) -> None:
    """What .env files hold today keeps working: the same text, now a typed value read where it is used."""
    targets = [{"name": " city ", "url": "https://city.example/hook", "secret": SECRET}]
    values = {
        "WEBHOOK_TARGETS": json.dumps(targets),
        "NOTICE_RATE_LIMITS": '{"webchat": {"per_account": 600, "per_group": null}}',
        "TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8",
        "OPEN311_API_KEYS": "k1, ,k2",
        "WECOM_ROBOTS": '{"group-1": "robot-key"}',
        "MORNING_DIGEST_AT": "07:30",
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    (city,) = settings.webhook_targets
    assert city.name == "city" and city.secret.get_secret_value() == SECRET
    assert settings.notice_rate_limits == {"webchat": {"per_account": 600, "per_group": None}}
    assert settings.trusted_proxies == (ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("10.0.0.0/8"))
    assert [key.get_secret_value() for key in settings.open311_api_keys] == ["k1", "k2"]
    assert settings.wecom_robots == {"group-1": "robot-key"}
    assert settings.morning_digest_at == time(7, 30)


def test_empty_values_mean_none(clean_env: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOK_TARGETS", "NOTICE_RATE_LIMITS", "TRUSTED_PROXIES", "OPEN311_API_KEYS", "WECOM_ROBOTS"):
        clean_env.setenv(name, "")
    clean_env.setenv("MORNING_DIGEST_AT", "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.webhook_targets == () and settings.trusted_proxies == () and settings.open311_api_keys == ()
    assert settings.notice_rate_limits == {} and settings.wecom_robots == {} and settings.morning_digest_at is None
    assert Settings(_env_file=None, morning_digest_at="08:00").morning_digest_at == time(8, 0)  # type: ignore[call-arg]


def test_gridbot_prints_the_problem_and_exits(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One message naming each bad variable, no traceback, and never the value (it may hold a secret)."""
    clean_env.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'never.db'}")
    clean_env.setenv("WEBHOOK_TARGETS", json.dumps([{"name": "city", "url": "not a url", "secret": SECRET}]))
    clean_env.setenv("TRUSTED_PROXIES", "10.0.0.x")
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 2, result.output
    assert "WEBHOOK_TARGETS" in result.output and "TRUSTED_PROXIES" in result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    assert not (tmp_path / "never.db").exists()  # the command itself never ran


@pytest.mark.e2e  # the installed `gridbot` in a process of its own
def test_the_gridbot_command_exits_non_zero_with_the_message(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'never.db'}", NOTICE_RATE_LIMITS="{not json")
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "gridbot"), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "NOTICE_RATE_LIMITS must be JSON" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "never.db").exists()


def test_secrets_stay_out_of_repr_and_logs(clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        action_endpoint_token=SECRET,
        rasa_auth_token=SECRET,
        wecom_secret=SECRET,
        wecom_token=SECRET,
        wecom_encoding_aes_key=SECRET,
        wechaty_puppet_service_token=SECRET,
        wecom_aibot_secret=SECRET,
        open311_api_keys=f"{SECRET},other",
        webhook_targets=json.dumps([{"name": "city", "url": "https://city.example/hook", "secret": SECRET}]),
        database_url=f"postgresql://gridbot:{SECRET}@db.example/gridbot",
        redis_url=f"redis://:{SECRET}@redis.example:6379/0",
    )
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    assert "postgresql://gridbot:***@db.example/gridbot" in repr(settings)  # the rest of the URL still shows
    assert SECRET in settings.database_url  # a plain URL to the code that connects
    assert settings.wecom_secret.get_secret_value() == SECRET  # the use sites still get the value
    install_redaction()
    with caplog.at_level(logging.INFO):
        logging.getLogger("gridbot.test").info("settings: %s; token %s", settings, settings.rasa_auth_token)
        logging.getLogger("gridbot.test").info("as dict: %r", settings.model_dump())
    for form in ("text", "json"):
        printed = "\n".join(formatter_for(form).format(record) for record in caplog.records)
        assert "settings:" in printed and SECRET not in printed, printed


def test_configured_tokens_reach_their_use_sites() -> None:
    """The secret's value, not its mask, is what Rasa and the action endpoint get."""
    settings = Settings(_env_file=None, action_endpoint_token=SECRET, rasa_auth_token=SECRET + "-rasa")  # type: ignore[call-arg]
    assert rasa_tokens.action_token(settings) == SECRET
    assert rasa_tokens.rasa_token(settings) == rasa_tokens.known_rasa_token(settings) == SECRET + "-rasa"
