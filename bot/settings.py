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
    # How long after a knowledge-base answer the bot listens for the resident's "没用" (answer_unhelpful).
    expect_feedback_seconds: int = 30 * 60
    deferred_retry_seconds: float = 30.0
    # A report of the same category at the same place within this window joins the open ticket.
    duplicate_window_hours: float = 72.0
    outbox_interval_seconds: float = 5.0
    deadline_check_seconds: float = 60.0
    # External systems that receive every ticket event, as JSON: [{"name": "city", "url": "https://…", "secret": "…"}]
    webhook_targets: str = ""
    # Keys that may create requests through Open311 POST (comma-separated); GET needs none.
    open311_api_keys: str = ""
    # Dense retrieval model for the knowledge base: `auto` (offline multilingual-e5-small built by `make setup`),
    # a local sentence-transformers folder, a hub name (e.g. BAAI/bge-small-zh-v1.5) or `none` (lexical only).
    kb_embedding_model: str = "auto"
    # Text put before every sentence for the model; unset: the model's convention ("query: " for e5).
    kb_embedding_prefix: str | None = None

    # --- benefit notices (惠民信息, issue #6) ---
    # With REDIS_URL the app runs notice jobs in-process too; false when only `gridbot worker` processes send.
    notice_worker_in_app: bool = True
    # Prefix of the notices' Redis keys (queue, job ids, rate limits). Unset: derived from DATABASE_URL, so every
    # process on one database shares the queue and two installations on one Redis never run each other's jobs.
    notice_namespace: str | None = None
    # The channel notices are delivered on (every group is a web chat group until issue #7).
    notice_channel: str = "webchat"
    # How often each process plans due notices, re-queues due deliveries that lost their job, and logs progress.
    notice_sweep_seconds: float = 10.0
    # Longest one delivery job may run; also its claim's lease, after which another job may take the delivery over.
    notice_job_timeout_seconds: float = 60.0
    notice_max_jobs: int = 10
    notice_poll_seconds: float = 0.5
    # Longest a job sleeps for a rate-limit slot before it gives its worker slot back and is deferred instead.
    notice_max_wait_seconds: float = 5.0
    # Failed sends are retried after this, doubling up to the cap, until the attempts run out (status failed).
    notice_retry_first_seconds: float = 5.0
    notice_retry_max_seconds: float = 1800.0
    notice_max_attempts: int = 8
    # Per-channel overrides of a channel's own send limits, as JSON:
    # {"webchat": {"per_account": 20, "per_group": 5, "window_seconds": 60, "jitter_seconds": 2}} (null: no limit).
    notice_rate_limits: str = ""


@cache
def get_settings() -> Settings:
    return Settings()
