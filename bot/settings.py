"""Configuration from the environment; every default is the embedded one (SQLite, in-memory state, local Rasa)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'gridbot.db'}"
    redis_url: str | None = None
    rasa_url: str = "http://127.0.0.1:5005"
    rasa_timeout_seconds: float = 30.0
    app_host: str = "127.0.0.1"
    app_port: int = 8000
    bot_name: str = "网格助手"
    # A group message not addressed to the bot is still answered when NLU is this sure it is a request.
    request_intents: tuple[str, ...] = (
        "ask_policy",
        "report_issue",
        "check_ticket_status",
        "urge_ticket",
        "ask_human",
        "complain_service",
        "ask_notices",
    )
    request_confidence: float = 0.85
    # While the bot waits for someone's answer, these intents are still treated as chatter and ignored.
    chatter_intents: tuple[str, ...] = ("chitchat", "greet", "goodbye", "thanks", "out_of_scope", "bot_challenge")
    command_prefixes: tuple[str, ...] = ("#助手", "小助手")
    max_text_chars: int = 2000
    # How long the bot keeps listening to a resident it asked a question (location, rating), unaddressed.
    expect_reply_seconds: int = 30 * 60
    deferred_retry_seconds: float = 30.0
    # A report of the same category at the same place within this window joins the open ticket.
    duplicate_window_hours: float = 72.0
    outbox_interval_seconds: float = 5.0
    deadline_check_seconds: float = 60.0
    # External systems that receive every ticket event, as JSON: [{"name": "city", "url": "https://…", "secret": "…"}]
    webhook_targets: str = ""
    # Keys that may create requests through Open311 POST (comma-separated); GET needs none.
    open311_api_keys: str = ""


@cache
def get_settings() -> Settings:
    return Settings()
